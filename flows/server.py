"""Prefect's ephemeral API server, started early so that its start-up overlaps the flow's
imports and DVC's status check.

Without PREFECT_API_URL, Prefect starts a temporary server at the flow's first API
call (`SubprocessASGIServer`): it imports the server's code into this process (about
4 CPU-s, which this process never uses) and then waits while a uvicorn process boots.
`ephemeral_api()` runs the same uvicorn command from the start instead (before this
process imports Prefect), and points the flow at it with PREFECT_API_URL. No server is
left running when an API URL (env or profile) is set.

Stopping it cleanly: the client sends its task-run events in the background, and the
server's task_run_recorder writes each to its database (batch size 1) inside its event
consumer. A server whose services stop while a consumer still handles an event cancels
the write: `Error flushing 1 events`, CancelledError tracebacks, and the last task run's
final state lost. So, in order: `settle()` sends what the client still queues and waits
until the server has recorded every task run of the flow run in a final state; then the
server is stopped (SIGTERM), and on the way down `create_app()`'s lifespan waits until
every message of its in-memory broker has been handled before Prefect stops its services.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PORT_IN_USE = 3  # uvicorn's exit code when the port is taken
DRAIN_S = 5.0  # at most, for the server's broker to drain at shutdown


def create_app():
    """Prefect's server app (uvicorn's factory), whose shutdown first lets the in-memory
    broker drain: every message published has been handled by each consumer (Prefect's
    own counters, `published` - `consumed` per topic), so no service stops mid-write."""
    from contextlib import asynccontextmanager

    from prefect.server.api.server import create_app as prefect_app

    app = prefect_app()
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            try:
                yield state
            finally:
                await _drained(DRAIN_S)

    app.router.lifespan_context = lifespan
    return app


async def _drained(timeout: float, poll: float = 0.05) -> bool:
    """Wait until no topic of the in-memory broker has a message not yet handled (another
    broker keeps no such counters: nothing to wait for)."""
    import asyncio

    from prefect.server.utilities.messaging import memory

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(m["published"] <= m["consumed"] for m in list(memory.METRICS.values())):
            return True
        await asyncio.sleep(poll)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(DRAIN_S + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EphemeralAPI:
    """A temporary Prefect API server on a free loopback port, stopped at exit."""

    def __init__(self) -> None:
        # The server reads the same environment, Prefect profile and working directory as
        # this process, so it resolves the same settings without being handed them.
        self.env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",  # as Prefect's own ephemeral server
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        self.app_dir = str(Path(__file__).resolve().parents[1])  # flows/server.py's
        self._start()
        atexit.register(self.stop)  # after Prefect's log workers drain

    def stop(self) -> None:
        _stop(self.proc)

    def _start(self) -> None:
        from genpt.stack.seaweedfs import free_ports

        port = str(free_ports(1)[0])
        self.url = f"http://127.0.0.1:{port}"
        app = "flows.server:create_app"  # Prefect's app, drained at shutdown
        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", self.app_dir, "--factory", app]
        cmd += ["--host", "127.0.0.1", "--port", port, "--log-level", "error", "--lifespan", "on"]
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL)

    def wait(self) -> str:
        """Block until the server answers /api/health (Prefect's setting
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); its API URL."""
        from prefect.logging import get_logger
        from prefect.settings import get_current_settings

        timeout = get_current_settings().server.ephemeral.startup_timeout_seconds

        get_logger().info("Starting temporary server on %s", self.url)  # as Prefect logs it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() == PORT_IN_USE:  # another process took the port meanwhile
                self._start()
            elif self.proc.poll() is not None:
                raise RuntimeError(f"Prefect's temporary server exited ({self.proc.returncode})")
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=2) as r:
                    if r.status == 200:
                        return f"{self.url}/api"
            except OSError:
                time.sleep(0.1)
        _stop(self.proc)
        raise RuntimeError(f"Prefect's temporary server did not answer in {timeout:.0f} s")


def _drain_client(timeout: float) -> None:
    """Send what Prefect's client still queues (events, logs) to the server now, instead of
    at interpreter exit (Prefect's own exit hooks find the queues empty)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        worker.drain_all(timeout=timeout, at_exit=False)


def settle(flow_run_id, timeout: float = 10.0, poll: float = 0.1) -> bool:
    """After a flow run: drain the client's queues, then wait (at most `timeout` s) until
    the server holds every task run of the flow run in a final state, unchanged over two
    polls. Whether it settled (a server that did not just stops later as before)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    try:
        _drain_client(timeout)
        if flow_run_id is None:  # the run was never created: nothing to record
            return True
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        last = None
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                states = sorted(
                    (str(t.id), t.state_type.value if t.state_type else "")
                    for t in client.read_task_runs(flow_run_filter=runs)
                )
                if all(st in FINAL for _, st in states) and states == last:
                    return True
                last = states
                time.sleep(poll)
    except Exception:  # best effort: the run's outcome stands either way
        pass
    return False


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def ephemeral_api() -> EphemeralAPI | None:
    """Start the temporary server now, unless an API URL (env or profile) is configured or
    ephemeral mode is off: then Prefect's own settings apply and this returns None.

    Importing Prefect's settings takes 1.5-2 s (the `prefect` package), so the server is
    started first and stopped again if a profile turns out to name an API URL."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    api = EphemeralAPI()
    from prefect.settings import get_current_settings

    s = get_current_settings()
    if s.api.url or not s.server.ephemeral.enabled:
        api.stop()
        return None
    return api

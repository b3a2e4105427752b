"""Prefect's ephemeral API server, started early so that its start-up overlaps the flow's
imports and DVC's status check.

Without PREFECT_API_URL, Prefect starts a temporary server at the flow's first API
call (`SubprocessASGIServer`): it imports the server's code into this process (about
4 CPU-s, which this process never uses) and then waits while a uvicorn process boots.
`ephemeral_api()` runs the same uvicorn command from the start instead, and points the
flow at it with PREFECT_API_URL. Nothing starts when an API URL (env or profile) is set.
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


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EphemeralAPI:
    """A temporary Prefect API server on a free loopback port, stopped at exit."""

    def __init__(self) -> None:
        import prefect
        from prefect.settings import get_current_settings

        self.env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",  # as Prefect's own ephemeral server
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        self.app_dir = str(Path(prefect.__file__).parents[1])
        self._start()
        atexit.register(lambda: _stop(self.proc))  # after Prefect's log workers drain

    def _start(self) -> None:
        from genpt.stack.seaweedfs import free_ports

        port = str(free_ports(1)[0])
        self.url = f"http://127.0.0.1:{port}"
        app = "prefect.server.api.server:create_app"
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


def ephemeral_api() -> EphemeralAPI | None:
    """Start the temporary server now, unless an API URL (env or profile) is configured or
    ephemeral mode is off: then Prefect's own settings apply and this returns None."""
    from prefect.settings import get_current_settings

    s = get_current_settings()
    if s.api.url or not s.server.ephemeral.enabled:
        return None
    return EphemeralAPI()

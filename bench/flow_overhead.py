"""Orchestration overhead: Prefect server start-up, and what the flow adds per DVC stage.

    python bench/flow_overhead.py                # 4 no-op stages
    python bench/flow_overhead.py --stages 8
    python bench/flow_overhead.py --workspace WS  # no-op `genpt pipeline` / `dvc repro` in WS

Builds a throw-away DVC workspace with N chained no-op stages, then times: a real
`prefect server start` (temporary PREFECT_HOME, loopback, free port) until /api/health
answers; `dvc repro` of all stages in one process; the flow (flows/pipeline.py, one
`dvc repro --single-item` task per stage) on that server, first with every stage
running, then with every stage up to date. The per-stage overhead is what the
flow costs over plain `dvc repro`, so training time is not part of it.

With --workspace (a clone of this repo in which the pipeline has completed): the wall
and CPU time (user + sys, children included) of `genpt pipeline` and `dvc repro` with
nothing to do, each run --runs times after one warm-up run, as a user runs them (the
workspace's own code, Prefect's ephemeral server), and of an empty flow on that server:
what Prefect alone costs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from genpt import offline


def workspace(root: Path, n: int) -> Path:
    ws = root / "ws"
    ws.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=ws, check=True)
    (ws / "params.yaml").write_text("seed: 1\n")
    stages = []
    for i in range(n):
        dep = f"\n    deps: [s{i - 1}.txt]" if i else ""
        write = f"open('s{i}.txt', 'w').write('{i}')"
        stages.append(f'  s{i}:\n    cmd: python -c "{write}"{dep}\n    outs: [s{i}.txt]')
    (ws / "dvc.yaml").write_text("stages:\n" + "\n".join(stages) + "\n")
    return ws


def start_server(home: Path) -> tuple[subprocess.Popen, str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return proc, url, time.perf_counter() - t0
        except OSError:
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise RuntimeError("prefect server did not start") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def timed(cmd: list[str], ws: Path, expect: str) -> tuple[float, float]:
    """(wall, CPU) seconds of `cmd` in `ws`; its output must show `expect` (nothing ran)."""
    env = dict(os.environ)  # the workspace's code first
    env["PYTHONPATH"] = os.pathsep.join([str(ws), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if expect not in out.stdout + out.stderr:
        raise RuntimeError(f"{' '.join(cmd)}: not a no-op run:\n{out.stdout}{out.stderr}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def no_op(ws: Path, runs: int) -> None:
    bindir = Path(sys.executable).parent
    empty = "from prefect import flow; flow(name='empty')(lambda: None)()"
    cmds = {
        "genpt pipeline": ([str(bindir / "genpt"), "pipeline"], "stages: 0 ran,"),
        "dvc repro": ([str(bindir / "dvc"), "repro"], "Data and pipelines are up to date"),
        "empty flow": ([sys.executable, "-c", empty], ""),  # Prefect's floor: ephemeral server
    }
    for name, (cmd, expect) in cmds.items():
        timed(cmd, ws, expect)  # warm-up: the ephemeral server's first start migrates its DB
        times = [timed(cmd, ws, expect) for _ in range(runs)]
        walls = ", ".join(f"{w:.1f}" for w, _ in times)
        cpus = ", ".join(f"{c:.1f}" for _, c in times)
        print(f"{name:15} no-op: wall {walls} s; CPU {cpus} s; load {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--workspace", type=Path, help="time no-op runs in this workspace")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.workspace:
        offline.apply()  # as genpt sets it (DVC_NO_ANALYTICS, ...); logs to the API, as users
        return no_op(args.workspace.resolve(), args.runs)
    offline.apply(PREFECT_LOGGING_TO_API_ENABLED="false")  # time the flow, not its logs
    n = args.stages
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ws = workspace(tmp, n)
        proc, url, started = start_server(tmp / "prefect-home")
        try:
            os.environ["PREFECT_API_URL"] = url
            from flows.pipeline import pipeline

            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=ws, check=True)
            dvc_s = time.perf_counter() - t0
            for p in ws.glob("s*.txt"):
                p.unlink()
            (ws / "dvc.lock").unlink()
            shutil.rmtree(ws / ".dvc" / "cache")  # no run-cache: every stage really runs
            t0 = time.perf_counter()
            out = pipeline(workspace=str(ws))["stages"]
            first_s = time.perf_counter() - t0
            assert all(r["ran"] for r in out.values()) and len(out) == n
            t0 = time.perf_counter()
            out = pipeline(workspace=str(ws))["stages"]
            again_s = time.perf_counter() - t0
            assert not any(r["ran"] for r in out.values())
        finally:
            stop(proc)
    print(f"prefect server start to healthy : {started:6.1f} s")
    print(f"dvc repro, {n} no-op stages      : {dvc_s:6.1f} s")
    print(f"flow, {n} stages run             : {first_s:6.1f} s")
    print(f"flow, {n} stages up to date      : {again_s:6.1f} s")
    print(f"flow overhead per stage         : {(first_s - dvc_s) / n:6.1f} s")


if __name__ == "__main__":
    main()

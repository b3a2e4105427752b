"""Where a no-op `genpt pipeline` spends its time: a timeline of its phases.

    python bench/noop_profile.py WORKSPACE [--runs 5] [-- -S key=value ...]

WORKSPACE: a clone of this repo in which the pipeline has completed with the same params
(the tests' `pipeline_run`: pass its `-S` overrides after `--`). Each run is `genpt
pipeline` as a user starts it (the workspace's code, an ephemeral server, a Prefect home
beside the workspace), in a child process that marks, in seconds since it started: the
server's start, the flow's code imported, the server answering, DVC's status check,
the flow's end (settle) and the server's stop. Prints each run's timeline, its wall and CPU
time (children included: the server's), and whether it printed a Traceback or ERROR.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import atexit, sys, time
T0 = time.perf_counter()
marks = []
atexit.register(lambda: print("TIMELINE " + " | ".join(f"{t:5.2f} {w}" for t, w in marks),
                              file=sys.stderr))

def timed(owner, name, label):
    f = getattr(owner, name, None)
    if f is None:  # older code: not there
        return
    def w(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            marks.append((time.perf_counter() - T0, f"{label} ({time.perf_counter() - t:.2f} s)"))
    setattr(owner, name, w)

import flows.server as fs
import genpt.cli as cli
start = fs.EphemeralAPI._start
def _start(self):
    start(self)
    marks.append((time.perf_counter() - T0, "server started"))
fs.EphemeralAPI._start = _start
wait = fs.EphemeralAPI.wait
def waited(self):
    import flows.pipeline as fp  # imported by now
    marks.append((time.perf_counter() - T0, "flow imported"))
    timed(fp, "read_stages", "DVC status")
    return wait(self)
fs.EphemeralAPI.wait = waited
timed(fs.EphemeralAPI, "wait", "server answers")
timed(fs.EphemeralAPI, "stop", "server stopped")
timed(fs, "settle", "settled")
sys.argv = ["genpt", "pipeline", *sys.argv[1:]]
cli.main()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    args = sys.argv[1:]
    cut = args.index("--") if "--" in args else len(args)
    a = ap.parse_args(args[:cut])  # after `--`: the pipeline's own options
    ws = a.workspace.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "GENPT_LOG"))}
    env.update(PREFECT_HOME=str(ws.parent / "prefect-home"), PYTHONPATH=str(ws))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    sets = args[cut + 1 :]
    for i in range(a.runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", CHILD, *sets], cwd=ws, env=env,
                           capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime"))
        lines = (r.stdout + r.stderr).splitlines()
        noisy = sum("Traceback" in ln or "ERROR" in ln for ln in lines)
        timeline = next((ln[9:] for ln in lines if ln.startswith("TIMELINE ")), "")
        if r.returncode:
            timeline += "\n" + r.stderr[-1500:]
        print(f"run {i}: rc {r.returncode}, wall {wall:.1f} s, CPU {cpu:.1f} s, "
              f"Traceback/ERROR lines {noisy}\n  {timeline}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

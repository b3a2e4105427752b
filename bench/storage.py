"""Figures for the S3 path: weed start, dvc push/pull, genpt publish/fetch on a local SeaweedFS.

    PYTHONPATH=$PWD python bench/storage.py [--mb 64] [-S paths.artifacts=artifacts]

Needs a finished pipeline under paths.artifacts (for publish). Everything runs in a temp dir;
the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genpt.params import load_params
from genpt.stack import seaweedfs as stack
from tasks import publish


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<28} {time.perf_counter() - t0:7.2f} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64, help="size of the file pushed with dvc")
    ap.add_argument("-S", "--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    root = Path.cwd()
    params = load_params(root / "params.yaml", args.overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    dvc = str(Path(sys.executable).with_name("dvc"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = timed("weed start + buckets", lambda: stack.up(tmp / "weed"))
        try:
            repo = tmp / "repo"
            repo.mkdir()
            for cmd in (
                ["git", "init", "-q"],
                [dvc, "init", "-q"],
                [dvc, "remote", "add", "-d", "storage", "s3://genpt-dvc/bench"],
            ):
                subprocess.run(cmd, cwd=repo, check=True, env=env)
            stack.configure_dvc_remote(repo, server)
            (repo / "blob.bin").write_bytes(os.urandom(args.mb << 20))
            subprocess.run([dvc, "add", "-q", "blob.bin"], cwd=repo, check=True, env=env)

            def run(*a):
                return subprocess.run([dvc, *a], cwd=repo, check=True, env=env, capture_output=True)

            timed(f"dvc push {args.mb} MiB", lambda: run("push"))
            subprocess.run(["rm", "-rf", ".dvc/cache", "blob.bin"], cwd=repo, check=True)
            timed(f"dvc pull {args.mb} MiB", lambda: run("pull"))

            os.environ.update(server.env())
            r = timed("genpt publish", lambda: publish.run(params, version="bench", target="s3"))
            print(f"{'  bundle':<28} {r['files']} files, {r['bytes'] / 1e6:.1f} MB")
            timed("genpt fetch + verify", lambda: publish.fetch(params, tmp / "got", target="s3"))
        finally:
            stack.down(tmp / "weed")


if __name__ == "__main__":
    main()

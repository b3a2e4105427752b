"""One DVC stage, as `dvc repro --single-item STAGE` runs it, through DVC's Python API.

The flow starts this as a subprocess per stage that DVC says is stale (the others it
reports as up to date without one), so that the stage's output streams into the
task's log, and learns the outcome from DVC itself rather than from its log text:
the stages `Repo.reproduce` returns (empty when up to date), DVC's lock error, or the
exit status.

    python -m flows.dvc_stage STAGE RESULT_JSON [--force]
"""

from __future__ import annotations

import argparse
import sys

BUSY = 3  # exit status: another DVC process holds the workspace's lock
FAILED = 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.dvc_stage", description=__doc__)
    ap.add_argument("stage")
    ap.add_argument("result", help="JSON file to write: {'ran': [reproduced stages]}")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)

    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.logger import setup
    from dvc.repo import Repo

    from genpt.io import write_json

    setup()  # DVC's own lines ("Running stage ...") as its CLI prints them
    try:
        with Repo(".") as repo:
            repo.scm_context.quiet = True  # no "git add dvc.lock" hint on every stage
            ran = repo.reproduce(args.stage, single_item=True, force=args.force)
    except LockError as e:
        print(f"error: {e}", file=sys.stderr)
        return BUSY
    except DvcException as e:
        causes, err = [], e
        while err is not None:
            causes.append(str(err))
            err = err.__cause__
        print("error: " + ": ".join(c for c in causes if c), file=sys.stderr)
        return FAILED
    write_json(args.result, {"ran": [s.addressing for s in ran]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Atomic file and directory writes, and small I/O helpers shared by the steps."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp directory that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> dict | None:
    """A JSON file's content, or None if there is no such file."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def json_lines(lines) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank JSON-lines line; ValueError('line N: ...')
    at the first line that is not a JSON object."""
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"line {i}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {i}: expected a JSON object")
        yield i, row


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def live(dir: str | Path):
    """A dvclive logger for one stage (no git/DVC side effects of its own)."""
    from dvclive import Live

    return Live(str(dir), save_dvc_exp=False, dvcyaml=False, report=None)


def log_to(lv):
    """Adapter from the engine's log(metrics, step) callback to dvclive."""

    def log(metrics: dict, step: int) -> None:
        lv.step = step
        for k, v in metrics.items():
            lv.log_metric(k, v)

    return log

"""The tree's own rules: one place sets the offline environment."""

from __future__ import annotations

import ast
from pathlib import Path

from genpt.offline import OFFLINE_ENV

ROOT = Path(__file__).resolve().parents[1]


def python_files():
    for d in ("genpt", "tasks", "model", "flows", "bench", "data", "examples"):
        yield from sorted((ROOT / d).rglob("*.py"))


def test_offline_variables_are_set_only_in_tasks_offline():
    """Every other module calls genpt.offline.apply() (.ci/run and the Dockerfile may
    set them for the whole process)."""
    named = {}
    for f in python_files():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Constant) and node.value in OFFLINE_ENV:
                named.setdefault(str(f.relative_to(ROOT)), []).append(node.value)
    assert set(named) == {"genpt/offline.py"}, named

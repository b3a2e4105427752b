"""The suite's parallel runs rely on `--dist loadgroup` keeping an xdist_group on one
worker (tests/conftest.py groups the tests that share a module-scoped fixture, so a
trained model or a server is built once). pytest 9.2 with pytest-xdist 3.8 silently
stopped doing it (pytest-dev/pytest-xdist#1386): every worker built the fixture again.
constraints.txt pins a pair that works; this test fails on one that does not."""

from __future__ import annotations

import subprocess
import sys


def test_a_group_runs_on_one_worker_and_builds_its_fixture_once(tmp_path):
    builds = tmp_path / "builds.txt"
    (tmp_path / "test_grouped.py").write_text(
        f"""
import os, pytest

@pytest.fixture(scope="module")
def shared():
    with open({str(builds)!r}, "a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")

pytestmark = pytest.mark.xdist_group("g")

@pytest.mark.parametrize("i", range(8))
def test_uses_it(shared, i):
    pass
"""
    )
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
         "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path / "test_grouped.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(builds.read_text().split()) == 1, builds.read_text()

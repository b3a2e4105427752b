"""The container files, checked without a Docker engine: hadolint, the install lines
against README.md, and compose.yaml's services and GPU reservation."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_hadolint_clean():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    r = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_installs_the_way_the_readme_does():
    readme = (ROOT / "README.md").read_text()
    setup = re.search(r"pip install (torch==\S+) && pip install -e \. -c constraints.txt", readme)
    assert setup, "README's set-up command changed: update the Dockerfile and this test"
    runs = [args for ins, args in _instructions() if ins == "RUN"]
    assert any(f"pip install {setup.group(1)}" == r for r in runs), runs
    assert any(re.search(r"pip install \. -c constraints.txt", r) for r in runs), runs
    assert "onnxruntime-gpu" in (ROOT / "pyproject.toml").read_text()


def test_multi_stage_cached_non_root_genpt_entrypoint():
    ins = _instructions()
    assert sum(i == "FROM" for i, _ in ins) >= 2
    copies = [a for i, a in ins if i == "COPY"]
    first_code = next(n for n, a in enumerate(copies) if a.startswith("model"))
    pyproject = next(n for n, a in enumerate(copies) if a.startswith("pyproject.toml"))
    assert pyproject < first_code  # dependency layers before the code
    packages = yaml.safe_load(
        "[" + re.search(r"include = \[(.*)\]", (ROOT / "pyproject.toml").read_text()).group(1) + "]"
    )
    for pkg in packages:  # every package pyproject installs is copied in
        assert any(a.startswith(f"{pkg.rstrip('*')} ") for a in copies), pkg
    user = [a for i, a in ins if i == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert [a for i, a in ins if i == "ENTRYPOINT"] == ['["genpt"]']
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".env", "artifacts", ".venv"} <= set(ignored)


def test_compose_has_storage_server_and_a_gpu_worker():
    c = yaml.safe_load((ROOT / "compose.yaml").read_text())
    s = c["services"]
    assert s["seaweedfs"]["image"].startswith("chrislusf/seaweedfs")
    assert "-s3" in s["seaweedfs"]["command"]
    assert s["prefect-server"]["command"][:2] == ["server", "start"]
    w = s["worker"]
    assert w["build"] == "." and w["command"][:2] == ["worker", "start"]
    pool = w["command"][w["command"].index("--pool") + 1]
    prefect_yaml = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert {d["work_pool"]["name"] for d in prefect_yaml["deployments"]} == {pool}
    env = w["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["GENPT_S3_ENDPOINT_URL"].startswith("http://seaweedfs:")
    devices = w["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    for svc in s.values():  # published ports only on loopback
        for p in svc.get("ports", []):
            assert p.startswith("127.0.0.1:"), p
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # from the environment only
        assert env[key].startswith("${" + key), env[key]

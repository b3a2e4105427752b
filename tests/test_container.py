"""The container files: checked statically (hadolint, the install lines against README.md,
compose.yaml's services and GPU reservation), then built and run with podman (marked
`container`: the image, genpt in it, the tiny pipeline in a mounted workspace, no secrets)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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
    runs = [re.sub(r"^(--\S+\s+)+", "", a) for i, a in _instructions() if i == "RUN"]  # no --mount
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


# --- the image, built and run with podman (docker/build-local.sh) ---------------------------
# Marked `container`: deselected by default (pyproject.toml), CI runs them as their own step
# (`pytest -m container`) after installing podman, runc and mmdebstrap.

IMAGE = os.environ.get("GENPT_IMAGE", "localhost/genpt:latest")
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "containers.conf")}
PODMAN_ENV["CONTAINERS_CONF"] = os.environ.get("CONTAINERS_CONF", PODMAN_ENV["CONTAINERS_CONF"])
# What a leaked credential looks like: AWS keys, tokens, passwords (names or AWS key ids).
SECRET = re.compile(r"AKIA[0-9A-Z]{16}|(SECRET|TOKEN|PASSWORD|PASSWD)[A-Z_]*=\S", re.I)


def podman(*args: str, ok: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    r = subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout
    )
    if ok and r.returncode:
        raise AssertionError(f"podman {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def image() -> str:
    """The image built from this checkout (cached layers make a rebuild cheap)."""
    env = {**PODMAN_ENV, "GENPT_IMAGE": IMAGE}
    r = subprocess.run(
        [str(ROOT / "docker" / "build-local.sh")], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, f"docker/build-local.sh failed:\n{r.stdout[-4000:]}\n{r.stderr}"
    return IMAGE


def _sources_digest() -> str:
    """Python code that prints {relative path: sha256} of genpt's installed packages."""
    return (
        "import hashlib, importlib.util, json, pathlib\n"
        "out = {}\n"
        f"for pkg in {PACKAGES!r}:\n"
        "    root = pathlib.Path(importlib.util.find_spec(pkg).origin).parent\n"
        "    for f in sorted(root.rglob('*.py')):\n"
        "        rel = f.relative_to(root.parent).as_posix()\n"
        "        out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()\n"
        "print(json.dumps(out))\n"
    )


PACKAGES = ["genpt", "model", "tasks", "flows"]


@pytest.mark.container
@pytest.mark.slow
def test_image_runs_genpt_as_non_root(image):
    assert "pipeline" in podman("run", "--rm", image, "--help").stdout
    assert podman("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip() != "0"
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user.split(":")[0] not in ("", "0", "root"), user


@pytest.mark.container
@pytest.mark.slow
def test_image_genpt_is_this_checkout(image):
    """A broken or stale build is caught: the image's genpt code is byte for byte the
    checkout's (every .py file of genpt/, model/, tasks/, flows/) and its version is pyproject's."""
    code = _sources_digest() + "import importlib.metadata as m; print(m.version('genpt'))"
    out = podman("run", "--rm", "--entrypoint", "python", image, "-c", code).stdout.splitlines()
    import hashlib
    import json

    here = {
        f.relative_to(ROOT).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for pkg in PACKAGES
        for f in sorted((ROOT / pkg).rglob("*.py"))
    }
    there = json.loads(out[0])
    differ = sorted(k for k in here.keys() | there.keys() if here.get(k) != there.get(k))
    assert not differ, f"the image's genpt is not this checkout's: {differ[:10]}"
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert out[1] == version.group(1)


def _leaks(text: str) -> list[str]:
    """Credential-looking strings in `text`, and any value of this environment's keys."""
    found = SECRET.findall(text)
    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "HF_TOKEN"):
        if len(os.environ.get(key, "")) >= 8 and os.environ[key] in text:
            found.append(key)
    return found


@pytest.mark.container
@pytest.mark.slow
def test_no_secret_in_the_image_history_or_env(image, tmp_path):
    def leaks(ref: str) -> list[str]:
        history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref).stdout
        env = podman("image", "inspect", "--format", "{{json .Config.Env}}", ref).stdout
        files = podman("run", "--rm", "--entrypoint", "ls", ref, "-a", "/workspace").stdout
        return _leaks(history + env) + [f for f in files.split() if f == ".env"]

    assert leaks(image) == []
    # the check itself sees a planted key (a layer on top: no rebuild)
    (tmp_path / "Containerfile").write_text(
        f"FROM {image}\nENV AWS_SECRET_ACCESS_KEY=planted-not-a-real-key\n"
    )
    podman("build", "-q", "-t", "localhost/genpt-leak:test", str(tmp_path))
    try:
        assert leaks("localhost/genpt-leak:test")
    finally:
        podman("rmi", "localhost/genpt-leak:test", ok=False)


def _workspace(dst: Path, overrides: list[str]) -> None:
    """A copy of the checkout's files (no .git: DVC runs without SCM), params.yaml set."""
    from genpt.params import apply_override, read_yaml

    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith("artifacts/"):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    params = read_yaml((dst / "params.yaml").read_text())
    for o in overrides:
        apply_override(params, o)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.container
@pytest.mark.slow
def test_pipeline_in_the_container(image, tmp_path, tiny_overrides):
    """`genpt pipeline` (tiny) as the image's non-root user in a workspace mounted from the
    host: the gate passes, the artifacts land on the host readable, `dvc repro` is a no-op."""
    import json
    import time

    ws = tmp_path / "ws"
    _workspace(ws, [o for o in tiny_overrides if not o.startswith("paths.artifacts")])
    uid = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.split(":")[0]
    if os.getuid() == 0:  # rootful podman: the workspace belongs to the image's user
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(ws)], check=True)
        run = ["run", "--rm", "-v", f"{ws}:/workspace"]
    else:  # rootless: the host user is the image's user inside
        run = ["run", "--rm", "--userns", f"keep-id:uid={uid},gid={uid}", "-v", f"{ws}:/workspace"]
    start = time.monotonic()
    p = podman(*run, image, "pipeline")
    print(f"genpt pipeline (tiny) in the container: {time.monotonic() - start:.0f} s")

    verdict = json.loads((ws / "artifacts" / "gate" / "verdict.json").read_text())
    assert verdict["passed"] is True, p.stdout
    files = [f for f in (ws / "artifacts").rglob("*") if f.is_file()]
    assert (ws / "artifacts" / "registry").is_dir() and len(files) > 10
    for f in files:
        assert os.access(f, os.R_OK), f
        assert f.stat().st_uid == (int(uid) if os.getuid() == 0 else os.getuid()), f
    again = podman(*run, "--entrypoint", "dvc", image, "repro").stdout
    assert "Running stage" not in again and "up to date" in again, again

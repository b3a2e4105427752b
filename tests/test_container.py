"""The container files: checked statically (hadolint, the install lines against README.md,
compose.yaml's services and GPU reservation), then built and run with podman (marked
`container`: the image, genpt in it, the tiny pipeline in a mounted workspace, no secrets)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
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
    assert {".git", ".env", ".genpt", "artifacts", ".venv"} <= set(ignored)


S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def test_compose_stack_from_this_image_on_loopback():
    """compose.yaml: S3 (the image's weed), a Prefect server and a worker, one image; ports on
    127.0.0.1 only; the image's non-root user; the S3 keys passed by name, never a value.
    compose.gpu.yaml adds the worker's GPU."""
    s = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert {"seaweedfs", "s3-init", "prefect-server", "worker"} <= set(s)
    assert {svc["image"] for svc in s.values()} == {"${GENPT_IMAGE:-genpt:latest}"}
    assert {"-s3", "-s3.config=/tmp/s3.json"} <= set(s["seaweedfs"]["command"])
    assert s["prefect-server"]["command"][:2] == ["server", "start"]
    w = s["worker"]
    assert w["build"] == "." and w["command"][:2] == ["worker", "start"]
    pool = w["command"][w["command"].index("--pool") + 1]
    prefect_yaml = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert {d["work_pool"]["name"] for d in prefect_yaml["deployments"]} == {pool}
    env = w["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["GENPT_S3_ENDPOINT_URL"].startswith("http://seaweedfs:")
    for svc in s.values():
        for p in svc.get("ports", []):  # published ports only on loopback
            assert p.startswith("127.0.0.1:"), p
        assert "user" not in svc  # the image's user (non-root)
        for key in S3_KEYS:  # from the environment, by name only
            assert svc.get("environment", {}).get(key) is None, (key, svc)
    gpu = yaml.safe_load((ROOT / "compose.gpu.yaml").read_text())["services"]["worker"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


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
        return _leaks(history + env) + [f for f in files.split() if f in (".env", ".genpt")]

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


# --- the compose stack (compose.yaml) with podman-compose (docker/compose-local.sh) ----------


@dataclass
class Compose:
    """One podman-compose project of compose.yaml: its own name, keys and loopback ports."""

    env: dict
    project: str
    s3: str  # the S3 endpoint from the host
    api: str  # the Prefect API from the host
    output: list[str] = field(default_factory=list)  # podman-compose's output, logs of `down`

    def __call__(self, *args: str, ok: bool = True) -> str:
        r = subprocess.run(
            [str(ROOT / "docker" / "compose-local.sh"), *args],
            env=self.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        self.output.append(r.stdout + r.stderr)
        assert r.returncode == 0 or not ok, f"compose {args} -> {r.returncode}\n{self.output[-1]}"
        return r.stdout

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def names(self, *ps_args: str) -> list[str]:
        label = f"label=io.podman.compose.project={self.project}"
        return podman("ps", *ps_args, "--format", "{{.Names}}", "--filter", label).stdout.split()

    def logs(self) -> str:
        runs = [podman("logs", n) for n in self.names("-a")]
        return "".join(r.stdout + r.stderr for r in runs)

    def down(self) -> None:
        self.output.append(self.logs())  # the containers go: keep their logs
        self("down")

    def up(self) -> None:
        """up -d, then wait for S3 (s3-init exits 0 once it answers) and the Prefect API."""
        self("up", "-d")
        code = podman("wait", self.container("s3-init"), timeout=300).stdout.strip()
        assert code == "0", podman("logs", self.container("s3-init")).stderr
        _wait(lambda: urllib.request.urlopen(f"{self.api}/health", timeout=5), 300, "Prefect API")

    def client(self):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api}):
            return get_client(sync_client=True)


def _wait(probe, timeout: float, what: str):
    """probe() until it returns without an exception (and not None); its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            out = probe()
            if out is not None:
                return out
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not ready after {timeout:.0f} s ({e!r})") from e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(3)


@pytest.fixture(scope="module")
def stack(image):
    """compose.yaml up as a project of its own: fresh random S3 keys in the environment,
    free loopback ports; `down -v` (containers, volumes, network) at the end."""
    from genpt.stack.seaweedfs import free_ports

    s3_port, api_port, serve_port = free_ports(3)
    project = f"genpt-test-{os.getpid()}"
    keys = {
        "AWS_ACCESS_KEY_ID": "GENPT" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }
    env = {**PODMAN_ENV, **keys, "GENPT_IMAGE": image, "GENPT_COMPOSE_PROJECT": project,
           "GENPT_S3_PORT": str(s3_port), "GENPT_PREFECT_PORT": str(api_port),
           "GENPT_SERVE_PORT": str(serve_port)}  # fmt: skip
    c = Compose(env, project, f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{api_port}/api")
    try:
        yield c
    finally:
        c("down", "-v", ok=False)
        podman("network", "rm", f"{project}_default", ok=False)


def _genpt(*args: str, env: dict) -> str:
    """`genpt ARGS` on the host (this checkout), its stdout; fails the test on an error."""
    r = subprocess.run(
        [sys.executable, "-m", "genpt.cli", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip
    assert r.returncode == 0, f"genpt {' '.join(args)} -> {r.returncode}\n{r.stderr[-3000:]}"
    return r.stdout


def _s3_env(c: Compose) -> dict:
    keys = {k: c.env[k] for k in S3_KEYS}
    return {**keys, "GENPT_S3_ENDPOINT_URL": c.s3, "AWS_ENDPOINT_URL": c.s3}


def _bundle_keys(c: Compose) -> list[str]:
    from genpt.stack import storage

    keys = _s3_env(c)
    s3 = storage.s3_client(c.s3, 2, (keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]))
    listed = s3.list_objects_v2(Bucket="genpt-models", Prefix="models/genpt/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.mark.container
@pytest.mark.slow
def test_compose_stack_runs_the_deployment_to_a_bundle_the_host_serves(
    stack, tiny_overrides, tmp_path
):
    """up; deploy prefect.yaml (its cron schedule registered); run the deployment (tiny) on
    the worker to a published bundle in the stack's S3; `genpt fetch` and `genpt predict`
    from the host get it; after down and up, Prefect's history and the bucket are kept."""
    from prefect.client.schemas.objects import StateType

    start = time.monotonic()
    stack.up()
    with stack.client() as client:  # the worker creates its pool; deploy after that
        _wait(lambda: client.read_work_pool("genpt-process"), 300, "work pool genpt-process")
    podman("exec", stack.container("worker"), "prefect", "--no-prompt", "deploy", "--all")
    overrides = [o for o in tiny_overrides if not o.startswith("paths.artifacts")]
    with stack.client() as client:
        deployment = client.read_deployment_by_name("genpt-pipeline/nightly")
        crons = [(s.schedule.cron, s.active) for s in deployment.schedules]
        assert crons == [("0 2 * * *", True)], crons
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"overrides": overrides}
        )

        def final():
            s = client.read_flow_run(run.id).state
            return s if s and s.is_final() else None

        state = _wait(final, 1800, f"flow run {run.id}")
    print(f"compose stack: up to a completed deployment run in {time.monotonic() - start:.0f} s")
    assert state.type == StateType.COMPLETED, (state, podman("logs", stack.container("worker")))

    keys = _bundle_keys(stack)
    assert any(k.endswith("/manifest.json") for k in keys), keys
    env = _s3_env(stack)
    got = _genpt("fetch", str(tmp_path / "fetched"), env=env)
    assert json.loads(got)["files"] > 0 and (tmp_path / "fetched" / "manifest.json").is_file()
    rows = [{"id": i, "text": t} for i, t in enumerate(["The creature stood.", "Alice ran."])]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = {}
    for name, bundle in [("s3", "s3://genpt-models/models/genpt/latest"),
                         ("fetched", str(tmp_path / "fetched"))]:  # fmt: skip
        out[name] = tmp_path / f"{name}.jsonl"
        args = ["--bundle", bundle, "--model", "authors", "-o", str(out[name])]
        _genpt("predict", str(inp), *args, env={**env, "GENPT_CACHE": str(tmp_path / "cache")})
    served = [json.loads(line) for line in out["s3"].read_text().splitlines()]
    assert [r["id"] for r in served] == [0, 1] and all("prediction" in r for r in served)
    assert out["s3"].read_text() == out["fetched"].read_text()

    stack.down()
    stack.up()
    with stack.client() as client:  # Prefect's database and the bucket live in volumes
        assert client.read_flow_run(run.id).state.type == StateType.COMPLETED
        assert client.read_deployment_by_name("genpt-pipeline/nightly").id == deployment.id
    assert _bundle_keys(stack) == keys


@pytest.mark.container
@pytest.mark.slow
def test_compose_stack_non_root_loopback_and_no_key_in_logs(stack):
    """Every service runs as non-root and publishes on 127.0.0.1 only; the S3 keys are in no
    service's log (also those before `down`), in nothing podman-compose printed, and not in
    compose.yaml."""
    if not stack.names():
        stack.up()  # (run alone: the stack is not up yet)
    running = stack.names()
    services = sorted(n.rsplit("_", 2)[1] for n in running)  # PROJECT_SERVICE_N
    assert services == ["prefect-server", "seaweedfs", "serve", "worker"], running  # not s3-init
    for name in running:
        assert podman("exec", name, "id", "-u").stdout.strip() != "0", name
        ports = podman("inspect", "--format", "{{json .NetworkSettings.Ports}}", name).stdout
        ports = json.loads(ports) or {}
        for bindings in ports.values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings or []), (name, ports)
    logs = stack.logs() + "".join(stack.output)
    for key in S3_KEYS:
        assert stack.env[key] not in logs + (ROOT / "compose.yaml").read_text(), key
    assert not SECRET.findall(logs), SECRET.findall(logs)[:5]  # (compose.yaml's comments name them)

"""The Prefect flow over the DVC stages: order, artifacts, retries, failures, locking,
and the scheduled deployment on a real `prefect server start` with a process worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.pipeline import (
    LOCK_FILE,
    StageFailed,
    WorkspaceBusy,
    dataset_of,
    pipeline,
    read_stages,
    workspace_lock,
)
from tests.conftest import ROOT, TINY, workspace_copy

BIN = Path(sys.executable).parent

TOY_DVC_YAML = """
stages:
  publish:
    cmd: python publish.py
    deps: [metrics.json]
    outs:
      - receipt.json:
          cache: false
  count:
    cmd: python count.py
    deps: [count.py]
    params: [seed]
    outs:
      - table.json:
          cache: false
    metrics:
      - metrics.json:
          cache: false
"""
COUNT = """import json, yaml
seed = yaml.safe_load(open("params.yaml"))["seed"]
json.dump({"seed": seed, "sq": {"value": seed * seed}}, open("metrics.json", "w"))
json.dump([{"method": "full", "avg": "62.0"}], open("table.json", "w"))
"""
# fails once (a transient upload error), then writes the bundle's URI in its receipt
PUBLISH = """import json, pathlib, sys
if not pathlib.Path(".tried").exists():
    pathlib.Path(".tried").touch()
    sys.exit("error: upload failed: connection reset")
json.dump({"uri": "s3://bucket/models/toy/1/"}, open("receipt.json", "w"))
"""


def _dvc(*args, cwd):
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def toy(tmp_path) -> Path:
    """A tiny real DVC workspace: `count` (params + metrics), then `publish`."""
    ws = tmp_path / "toy"
    ws.mkdir()
    _dvc("init", "--no-scm", cwd=ws)
    (ws / "params.yaml").write_text("seed: 3  # the seed\n")
    (ws / "dvc.yaml").write_text(TOY_DVC_YAML)
    (ws / "count.py").write_text(COUNT)
    (ws / "publish.py").write_text(PUBLISH)
    return ws


@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


def _artifacts(flow_run_id) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {a.key: a for a in arts}


def _task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as c:
        return c.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def test_stages_come_from_dvc_yaml_in_dependency_order():
    names = [s.name for s in read_stages(ROOT)]
    from genpt.params import load_params

    for d in load_params(ROOT / "params.yaml").datasets:  # foreach stages expanded
        assert names.index(f"finetune@{d}") < names.index(f"evaluate@{d}")
    assert names.index("tokenize") < names.index("pretrain") < names.index("finetune@authors")


def test_dataset_of_foreach_and_matrix_stages():
    ds = {"authors", "authors2", "a-b", "a"}
    assert dataset_of("finetune@authors", ds) == "authors"
    assert dataset_of("study@authors2-scratch", ds) == "authors2"
    assert dataset_of("study@a-b-full", ds) == "a-b" and dataset_of("study@a-full", ds) == "a"
    assert dataset_of("report", ds) is None and dataset_of("study@zzz-full", ds) is None


def test_flow_runs_each_stage_with_retries_and_artifacts(toy, api_url):
    state = pipeline(workspace=str(toy), overrides=["seed=7"], return_state=True)
    assert state.is_completed(), state.message
    out = state.result()["stages"]
    assert list(out) == ["count", "publish"]  # topological, though dvc.yaml lists publish first
    assert out["count"]["ran"] and out["count"]["metrics"] == {"seed": 7, "sq.value": 49}
    assert out["publish"]["uri"] == "s3://bucket/models/toy/1/"
    assert "seed: 7" in (toy / "dvc.lock").read_text()  # the stages ran with the override
    assert (toy / "params.yaml").read_text() == "seed: 3  # the seed\n"  # and it is restored
    run = json.loads((toy / "artifacts" / "run.json").read_text())["stages"]
    assert [(r["stage"], r["ran"]) for r in run] == [("count", True), ("publish", True)]
    assert "stages: 2 ran, 0 up to date" in state.result()["summary"]

    arts = _artifacts(state.state_details.flow_run_id)
    assert {"count-metrics", "genpt-metrics", "genpt-summary", "publish-bundle"} <= set(arts)
    assert arts["count-table"].type == "table" and "62.0" in str(arts["count-table"].data)
    assert arts["publish-bundle"].data == "[s3://bucket/models/toy/1/](s3://bucket/models/toy/1/)"
    assert arts["genpt-metrics"].type == "table" and arts["genpt-summary"].type == "markdown"

    by_name = {r.name: r for r in _task_runs(state.state_details.flow_run_id)}
    assert by_name["publish"].run_count == 2  # one retry after the transient failure
    assert by_name["count"].run_count == 1

    again = pipeline(workspace=str(toy), overrides=["seed=7"])["stages"]
    assert again["count"]["ran"] is False  # DVC (Repo.reproduce): up to date, skipped
    plain = pipeline(workspace=str(toy))["stages"]  # params.yaml's own seed: 3
    assert plain["count"]["ran"] and plain["count"]["metrics"]["seed"] == 3


def test_a_failing_stage_fails_the_flow_with_its_error(toy, api_url):
    (toy / "count.py").write_text("raise SystemExit('error: data.jsonl: row 3: bad label')\n")
    state = pipeline(workspace=str(toy), return_state=True)
    assert state.is_failed()
    assert "stage count failed" in state.message and "row 3: bad label" in state.message
    with pytest.raises(StageFailed, match="row 3: bad label"):
        state.result()


def test_bad_override_fails_before_params_change(toy, api_url):
    before = (toy / "params.yaml").read_text()
    state = pipeline(workspace=str(toy), overrides=["sed=1"], return_state=True)
    assert state.is_failed() and "sed: unknown key" in state.message
    state = pipeline(workspace=str(toy), overrides=["seed=4"], datasets=["nope"], return_state=True)
    assert state.is_failed() and "unknown datasets ['nope']" in state.message
    assert (toy / "params.yaml").read_text() == before
    assert not (toy / "metrics.json").exists()  # no stage ran


def test_second_run_in_a_workspace_fails_clearly_and_leaves_the_first_intact(toy, api_url):
    (toy / "count.py").write_text("import time\ntime.sleep(15)\n" + COUNT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PREFECT_API_URL=api_url)
    # the first run as users start it: no PREFECT_API_URL, so on Prefect's ephemeral server
    alone = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    alone["PREFECT_HOME"] = str(toy.parent / "prefect-home")
    cmd = [sys.executable, "-m", "genpt.cli", "-v", "pipeline", "-p", str(toy / "params.yaml")]
    log = toy.parent / "first.log"
    first = subprocess.Popen(
        [*cmd, "-S", "seed=2"],
        cwd=ROOT,
        env=alone,
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),  # noqa: SIM115 - closed with the process
        text=True,
    )
    try:
        deadline = time.time() + 180
        lock = toy / LOCK_FILE  # holds "pid N" while a run has the workspace
        while not (lock.exists() and f"pid {first.pid}" in lock.read_text()):
            assert first.poll() is None, log.read_text()
            assert time.time() < deadline, "first run never took the workspace lock"
            time.sleep(0.5)
        second = subprocess.run(
            [*cmd, "-S", "seed=99"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert second.returncode == 1
        assert "another genpt pipeline run is using this workspace" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    err = log.read_text()
    assert first.returncode == 0, err
    assert "Starting temporary server" in err  # the ephemeral server (shown with -v)
    assert "stages: 2 ran, 0 up to date" in out  # the summary
    assert json.loads((toy / "metrics.json").read_text())["seed"] == 2
    assert "seed: 3" in (toy / "params.yaml").read_text()  # restored; the second run: nothing


def test_dvc_lock_held_elsewhere_is_reported(toy, api_url):
    from dvc.repo import Repo

    with Repo(str(toy)) as repo, repo.lock:  # e.g. someone's `dvc repro` in the same workspace
        state = pipeline(workspace=str(toy), overrides=["seed=5"], return_state=True)
        assert state.is_failed() and "DVC command holds" in state.message
        state = pipeline(workspace=str(toy), return_state=True)  # no params to write: DVC's lock
        assert state.is_failed() and "another DVC process holds" in state.message
    assert "seed: 3" in (toy / "params.yaml").read_text()
    with workspace_lock(toy):  # the flow's own lock, held by another run
        state = pipeline(workspace=str(toy), return_state=True)
    assert state.is_failed() and "another genpt pipeline run" in state.message
    with pytest.raises(WorkspaceBusy):
        state.result()


# --- a run with nothing to do: no stage process ----------------------------------------

# make -> copy -> count, each command logging that it ran (runs.log is no output)
CHAIN_DVC_YAML = """
stages:
  make:
    cmd: python make.py && echo make >> runs.log
    deps: [make.py]
    params: [seed]
    outs: [made.txt]
  copy:
    cmd: cp made.txt copied.txt && echo copy >> runs.log
    deps: [made.txt]
    outs: [copied.txt]
  count:
    cmd: wc -c copied.txt > counted.txt && echo count >> runs.log
    deps: [copied.txt]
    outs: [counted.txt]
"""
MAKE = """import yaml
open("made.txt", "w").write(f"seed {yaml.safe_load(open('params.yaml'))['seed']}\\n")
"""


@pytest.fixture
def spawned(monkeypatch) -> list[str]:
    """The stages for which the flow starts a `flows.dvc_stage` process (the real one)."""
    started = []

    class Counting(subprocess.Popen):
        def __init__(self, args, *a, **kw):
            if "flows.dvc_stage" in args:
                started.append(args[args.index("flows.dvc_stage") + 1])
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Counting)
    return started


@pytest.fixture
def chain(toy, api_url, spawned) -> Path:
    """A real DVC workspace of three chained stages, run once by the flow."""
    (toy / "dvc.yaml").write_text(CHAIN_DVC_YAML)
    (toy / "make.py").write_text(MAKE)
    assert all(r["ran"] for r in pipeline(workspace=str(toy))["stages"].values())
    assert spawned == ["make", "copy", "count"]
    spawned.clear()
    (toy / "runs.log").unlink()
    return toy


def _stale(ws: Path) -> set[str]:
    """The stages DVC's `Repo.status` says are not up to date, by name."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:
        return {k.rpartition(":")[2] for k in repo.status()}


def test_a_run_with_nothing_to_do_starts_no_stage_process(chain, spawned):
    state = pipeline(workspace=str(chain), return_state=True)
    out = state.result()["stages"]
    assert spawned == []  # DVC was asked once, in the flow's process
    assert list(out) == ["make", "copy", "count"]  # each stage still reported, as a task
    assert not any(r["ran"] or r["process"] for r in out.values())
    assert "stages: 0 ran, 3 up to date" in state.result()["summary"]
    assert not (chain / "runs.log").exists()
    run = json.loads((chain / "artifacts" / "run.json").read_text())["stages"]
    assert [(r["stage"], r["ran"]) for r in run] == [(s, False) for s in out]
    runs = _task_runs(state.state_details.flow_run_id)  # marked so in Prefect's UI too
    assert sorted((r.name, r.state.name) for r in runs) == [(s, "Up to date") for s in sorted(out)]


def test_an_upstream_change_runs_a_stage_that_was_up_to_date_at_the_start(chain, spawned):
    (chain / "make.py").write_text(MAKE.replace("seed {", "seed: {"))  # alters made.txt
    assert _stale(chain) == {"make"}  # copy and count: up to date, for now
    out = pipeline(workspace=str(chain))["stages"]
    assert spawned == ["make", "copy", "count"]
    assert all(r["ran"] for r in out.values())
    assert (chain / "runs.log").read_text().split() == ["make", "copy", "count"]
    assert (chain / "copied.txt").read_text() == "seed: 3\n" and _stale(chain) == set()

    spawned.clear()  # a change that leaves make's output as it was: copy is checked, not run
    with open(chain / "make.py", "a") as f:
        f.write("# a comment\n")
    out = pipeline(workspace=str(chain))["stages"]
    assert spawned == ["make"] and [s for s, r in out.items() if r["ran"]] == ["make"]
    assert _stale(chain) == set()


# --- the deployment on a real server -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process (and the children it started in its session), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_final(client, flow_run_id, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.read_flow_run(flow_run_id).state
        if state and state.is_final():
            return state
        time.sleep(3)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout}s: {state}")


@pytest.mark.slow
def test_deployment_on_a_real_server(pipeline_run, tmp_path):
    """The nightly deployment on a real server and worker, in a workspace where the TINY
    pipeline has run: a run with one dataset's param changed runs that dataset's stages;
    a bad dev row fails the next run at validation, with the file and row."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ws = workspace_copy(pipeline_run, tmp_path / "ws")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = dict(
        os.environ,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PYTHONPATH=str(ws),
        GENPT_WORKSPACE=str(ws),
        PATH=os.pathsep.join([str(BIN), os.environ["PATH"]]),
    )
    env.pop("PREFECT_PROFILE", None)
    # one dataset's budget changed: its stages (and those below them) run, the rest are skipped
    tiny = [*TINY, "finetune_by_dataset.authors.max_train_examples=16"]
    tiny += ["export.int8=false", "export.fp16=false"]  # a shorter export

    def prefect(*args):
        return subprocess.run(
            [str(BIN / "prefect"), *args], cwd=ws, env=env, capture_output=True, text=True
        )

    procs = []
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        t0 = time.time()
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=open(logs / "server.log", "w"),  # noqa: SIM115 - lives as long as the server
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(server)
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (logs / "server.log").read_text()
                assert time.time() - t0 < 240, "server did not start"
                time.sleep(1)
        print(f"server up in {time.time() - t0:.1f}s")

        r = prefect("work-pool", "create", "genpt-process", "--type", "process")
        assert r.returncode == 0, r.stdout + r.stderr
        r = prefect("--no-prompt", "deploy", "--all")
        assert r.returncode == 0, r.stdout + r.stderr

        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("genpt-pipeline/nightly")
            assert [s.schedule.cron for s in dep.schedules] == ["0 2 * * *"]
            assert dep.work_pool_name == "genpt-process"
            run = client.create_flow_run_from_deployment(dep.id, parameters={"overrides": tiny})

            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "genpt-process"],
                cwd=tmp_path,
                env=env,
                stdout=open(logs / "worker.log", "w"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(worker)
            t1 = time.time()
            state = _wait_final(client, run.id, timeout=1200)
            print(f"tiny flow run: {time.time() - t1:.1f}s")
            assert state.is_completed(), (logs / "worker.log").read_text()[-5000:]
            arts = _artifacts(run.id)
            for key in ("genpt-summary", "genpt-metrics", "evaluate-authors-metrics"):
                assert key in arts, sorted(arts)
            ran = {t.name for t in _task_runs(run.id) if t.state.name != "Up to date"}
            want = {"finetune@authors", "evaluate@authors", "report", "gate", "export", "publish"}
            want.add("study@authors-scratch")  # TINY's arm beside the product (finetune)
            assert ran == want, ran  # not validate; evaluate and report once those above ran
            assert (ws / "dvc.lock").exists() and (
                ws / "artifacts/eval/authors/metrics.json"
            ).exists()

            # a dataset file with a bad label: validation (the first stage) fails, naming
            # the file, row and expectation, and so does the flow run
            dev = ws / "data/finetune/authors/dev.jsonl"
            rows = dev.read_text().splitlines()
            bad = json.loads(rows[0]) | {"label": "nobody"}
            dev.write_text("\n".join([json.dumps(bad), *rows[1:]]) + "\n")
            run2 = client.create_flow_run_from_deployment(dep.id, parameters={"overrides": tiny})
            state2 = _wait_final(client, run2.id, timeout=600)
            assert state2.is_failed()
            assert "stage validate failed" in state2.message
            assert "authors/dev.jsonl" in state2.message and "'nobody'" in state2.message
    finally:
        for p in reversed(procs):
            _stop(p)

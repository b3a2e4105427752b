"""Shared fixtures: offline environment, the shared datasets, tiny params.

The suite runs under pytest-xdist (`-n`, see pyproject.toml). Each worker is one
process; the expensive session fixtures (`tokens`, `tiny_export`, `published`) are built
once per run, not once per worker: the first worker that needs one builds it under a
file lock in a directory every worker sees (`built_once`), the others wait and reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from genpt import offline

offline.apply(TQDM_DISABLE="1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share 2 cores: one BLAS/OpenMP thread each (subprocesses inherit it),
    # or spinning thread pools oversubscribe the cores and every torch job crawls.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # and a Prefect home each, so that no two ephemeral servers share one SQLite database
    import atexit
    import tempfile

    if "PREFECT_HOME" not in os.environ:
        os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
        atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], True)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENPT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    # Under `--dist loadgroup`, the tests that share a module-scoped fixture (a server, a
    # trained model) run on one worker, so it is built once; the rest spread one by one.
    # The tests that need the finished pipeline (`pipeline_run`, the run's longest build)
    # are one group, queued first: one worker builds it at once and runs them after it,
    # while the others never wait on its lock. Then modules with slow tests (each module
    # kept together), so the longest tests start early instead of running alone at the
    # end. xdist keeps this order (`--no-loadscope-reorder`, pyproject.toml).
    for item in items:
        if "pipeline_run" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("pipeline_run"))
        elif any(d[-1].scope == "module" for d in item._fixtureinfo.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    has_slow = {i.module.__name__ for i in items if "slow" in i.keywords}
    items.sort(
        key=lambda i: ("pipeline_run" not in i.fixturenames, i.module.__name__ not in has_slow)
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Under xdist, the worker that builds the pipeline keeps the default CPU priority and
    # every other worker lowers its own (once, for good), so the build, the run's longest
    # path, gets a whole core while the short tests share the other.
    global _niced
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not _niced and "pipeline_run" not in item.fixturenames:
        os.nice(5)
        _niced = True


_niced = False


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the real datasets); required in CI, skipped elsewhere if absent."""
    if not (SHARED / "README.md").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} missing: CI needs the shared datasets")
        pytest.skip(f"{SHARED} not found")
    return SHARED


def tiny(art, *extra) -> list[str]:
    """Overrides for the tiny preset with every output under `art`."""
    return [
        f"paths.artifacts={art}",
        "model.preset=tiny",
        "model.n_layer=null",  # the preset's 2 x 64, not the default recipe's 4 x 128
        "model.n_embd=null",
        "tokenizer.vocab_size=1024",
        "pretrain.warmup_steps=10",
        "pretrain.eval_batches=4",
        *extra,
    ]


def clone_repo(dst: Path) -> None:
    """A git clone of this repo plus the working tree's uncommitted changes to tracked files."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True)
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    if diff:
        subprocess.run(["git", "apply"], cwd=dst, input=diff, check=True)


def copy_tokens(src: Path, dst: Path) -> None:
    import shutil

    for d in ("tokenizer", "tokens"):
        shutil.copytree(src / d, dst / d)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """`build(dir)` once per test run, shared by every xdist worker; returns the dir.

    The dir sits beside the workers' own base temp dirs. A build that fails leaves no
    marker, so the next worker that asks tries again (and fails the same way)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-N/popen-gwK -> pytest-N, common to all workers
    out, done = root / name, root / f"{name}.built"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)  # what a failed build left
            out.mkdir(parents=True)
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def tokens(tmp_path_factory) -> Path:
    """The default corpus tokenized once (vocab 1024); an artifacts dir to copy from."""
    from genpt.params import load_params
    from tasks import tokenize

    def build(art: Path) -> None:
        tokenize.run(load_params(ROOT / "params.yaml", tiny(art)))

    return built_once(tmp_path_factory, "tokens", build)


# A fast CPU run of the whole pipeline on the default data (outputs where params say)
TINY = [
    "model.preset=tiny",
    "model.n_layer=null",  # the preset's 2 x 64, not the default recipe's 4 x 128
    "model.n_embd=null",
    "tokenizer.vocab_size=1024",
    "pretrain.steps=30",
    "pretrain.batch_size=8",
    "pretrain.eval_every=15",
    "pretrain.eval_batches=2",
    "pretrain.ckpt_every=15",
    "pretrain.warmup_steps=5",
    "finetune.epochs=1",
    "finetune.max_train_examples=64",
    "finetune.max_dev_examples=100",  # a seeded sample of each dev set (1,498 rows at most)
    *(  # the datasets' own budgets (300 rows) would win over the section's
        f"finetune_by_dataset.{name}.max_train_examples=64"
        for name in yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]
    ),
    "study.arms={scratch: {init: scratch}}",  # beside the product, `full`; no_aux: test_study
    "study.seeds=[1]",
    "study.lrs=[1.0e-3]",
    "study.report_rows=100",
    "gate.min_over_baseline=-100",  # 30 pre-training steps show no gain: gate the plumbing
    "gate.min_pretraining_gain=null",  # 1 seed per arm gives no interval to check
    "gate.max_drop_vs_latest=100",
]


@pytest.fixture
def tiny_overrides(tmp_path) -> list[str]:
    """TINY, with every output under tmp_path/artifacts."""
    return [f"paths.artifacts={tmp_path / 'artifacts'}", *TINY]


def genpt_pipeline(ws: Path, *args: str) -> subprocess.CompletedProcess:
    """`genpt pipeline ARGS` in workspace `ws`, as a user runs it: the workspace's code, an
    ephemeral Prefect server (a Prefect home beside `ws`), no log-level or API settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "GENPT_LOG"))}
    env.update(PREFECT_HOME=str(ws.parent / "prefect-home"), PYTHONPATH=str(ws))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return subprocess.run(
        [sys.executable, "-m", "genpt.cli", "pipeline", *args],
        cwd=ws, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> Path:
    """README's run command with the TINY params (`genpt pipeline -S ...`), run once in a
    clone of this repo: the returned dir holds the workspace `ws/` and `console.json`,
    the run's exit code and output. The tests that need a finished pipeline (console,
    incremental `dvc repro`, the deployment) each work on a copy (`workspace_copy`)."""

    def build(d: Path) -> None:
        clone_repo(d / "ws")
        r = genpt_pipeline(d / "ws", *[x for o in TINY for x in ("-S", o)])
        out = {"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
        (d / "console.json").write_text(json.dumps(out))

    return built_once(tmp_path_factory, "pipeline", build)


def workspace_copy(pipeline_run: Path, dst: Path) -> Path:
    """A copy of the finished pipeline's workspace (git, DVC cache and artifacts) at dst."""
    run = json.loads((pipeline_run / "console.json").read_text())
    assert run["returncode"] == 0, run["stderr"][-3000:]
    shutil.copytree(pipeline_run / "ws", dst, symlinks=True)
    return dst


@contextmanager
def seaweedfs(state: Path, **kw):
    """A real SeaweedFS S3 server on 127.0.0.1 (genpt/stack/seaweedfs.py), always stopped by pid
    (also after a restart on the same state dir): the one way the tests start one. Tests
    that kill or restart a server use their own; the rest share `weed`."""
    from genpt.stack import seaweedfs as stack

    server = stack.up(state, **kw)
    try:
        yield server
    finally:
        stack.down(state)


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    """The SeaweedFS server the tests that need S3 share, one per test module (so what
    one module publishes never meets another's); keys and buckets: genpt/stack/seaweedfs.py."""
    with seaweedfs(tmp_path_factory.mktemp("weed")) as server:
        yield server


@pytest.fixture
def s3_env(weed, monkeypatch, tmp_path):
    """Client environment for `weed`, run from an empty dir (no .genpt/s3.env leaks in)."""
    monkeypatch.chdir(tmp_path)
    for k, v in weed.env().items():
        monkeypatch.setenv(k, v)
    return weed


def tiny_export_params(root: Path):
    """The Params of `tiny_export`, with its artifacts under root/artifacts."""
    from genpt.params import load_params

    overrides = [
        f"paths.artifacts={root / 'artifacts'}",
        "paths.corpus=[data/corpus/alice.txt, data/corpus/frankenstein.txt]",
        "model.preset=tiny",
        "model.n_layer=null",  # the preset's 2 x 64, not the default recipe's 4 x 128
        "model.n_embd=null",
        "model.dropout=0.0",
        "tokenizer.vocab_size=1024",
        "pretrain.steps=60",
        "pretrain.batch_size=8",
        "pretrain.eval_every=60",
        "pretrain.eval_batches=2",
        "pretrain.ckpt_every=60",
        "pretrain.warmup_steps=5",
        "finetune.epochs=1",
        "finetune.max_train_examples=256",
        "study.seeds=[1]",  # the product's protocol: one run, no lr search
        "study.lrs=[1.0e-3]",
        "study.report_rows=100",
        # ARC (in data/, not a default dataset): multiple choice with 3 to 5 choices
        "datasets.arc={task_type: multiple_choice, train: data/finetune/arc/train.jsonl, "
        "dev: data/finetune/arc/dev.jsonl}",
        "finetune_by_dataset.arc={}",
    ]
    return load_params(ROOT / "params.yaml", overrides)


def _build_tiny_export(root: Path) -> None:
    from tasks import export, finetune, pretrain, tokenize

    params = tiny_export_params(root)
    tokenize.run(params)
    pretrain.run(params)
    finetune.run(params, "authors")
    export.run(params, triton=root / "triton")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny pipeline run (tokenize, pretrain, fine-tune `authors`) and its ONNX export,
    built once per test run (read-only: copy what you change).

    Returns the Params; artifacts under params.artifacts() (export/ is the bundle).
    """
    return tiny_export_params(built_once(tmp_path_factory, "tiny", _build_tiny_export))


def _build_published(src_params, tmp: Path) -> None:
    """`genpt publish` (local registry) of the LM and one model per task type, into tmp."""
    import torch
    from transformers import AutoModelForCausalLM

    from genpt import bundle
    from genpt import onnx_models as export
    from genpt.ingest.loaders import load_split
    from genpt.params import ExportConfig, load_params
    from model.task_model import TaskModel
    from model.tokenizer import load_tokenizer
    from tasks import publish

    src, art = src_params.artifacts(), tmp / "artifacts"
    shutil.copytree(src / "tokenizer", art / "tokenizer")
    (art / "tokens").mkdir()
    shutil.copy(src / "tokens" / "manifest.json", art / "tokens")  # the model card reads it
    for name in ("lm", "authors"):
        shutil.copytree(src / "export" / name, art / "export" / name)
    tok = load_tokenizer(src / "pretrain" / "hf")
    cfg = ExportConfig(fp16=False, int8=False)
    for name in ("snli", "stsb", "arc"):
        ds = src_params.dataset(name)
        torch.manual_seed(0)
        lm = AutoModelForCausalLM.from_pretrained(str(src / "pretrain" / "hf"))
        model = TaskModel(lm, ds.task_type, len(ds.labels) if ds.labels else 1)
        model.save(tmp / name, extra={"labels": ds.labels, "max_len": 64})
        tok.save_pretrained(str(tmp / name))
        rows = load_split(ds, "dev")[:8]
        export.export_task(tmp / name, art / "export" / name, cfg, rows)
    bundle.write_manifest(art / "export", format="onnx")
    params = load_params(
        ROOT / "params.yaml",
        [
            f"paths.artifacts={art}",
            f"publish.local_dir={tmp / 'registry'}",
            "gate.enabled=false",
        ],  # bundles here; the gate is tested in test_gate.py
    )
    publish.run(params, version="v1", target="local")


@pytest.fixture(scope="session")
def published(tiny_export, tmp_path_factory):
    """`genpt publish` (local registry) of a bundle with the LM and one model per task type,
    built once per test run.

    authors is tiny_export's fine-tuned model; snli, stsb and arc get untrained heads on the
    same LM (max_len 64, so truncation happens): enough to check how inputs are built.
    Returns the verified version directory (models/genpt/v1).
    """
    from genpt import bundle

    tmp = built_once(tmp_path_factory, "published", lambda d: _build_published(tiny_export, d))
    return bundle.open_bundle(tmp / "registry" / "models" / "genpt" / "latest")

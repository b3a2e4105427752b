"""The genpt pipeline as a Prefect flow: one task run per DVC stage.

dvc.yaml is the only definition of the stages. The flow reads the stage DAG from
DVC at run time (foreach stages expanded, e.g. `finetune@authors`) and asks DVC once,
in its own process, which stages are stale (what `dvc status` reports). Each stage is
a task, in topological order: a stale one runs in its own process with `dvc repro
--single-item STAGE` (DVC decides skip-or-run and keeps dvc.lock true, so the flow
cannot drift from `dvc repro`); an up-to-date one is reported as such (task state "Up
to date"), without a process. After a stage runs, its outputs may have changed, so
DVC is asked again about the stages that depend on it before they are skipped.
Flow parameters are written into params.yaml before anything runs, the same place
`dvc exp run -S key=value` writes them (comments kept).

A workspace runs one pipeline at a time: the flow holds an exclusive lock on
`.dvc/tmp/genpt-pipeline.lock` for its whole run; a second run fails at once with
a message naming the holder. Each `dvc repro` also takes DVC's own repo lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State
from prefect.tasks import exponential_backoff

from flows.dvc_stage import BUSY
from model.progress import duration

LOCK_FILE = ".dvc/tmp/genpt-pipeline.lock"
IO_STAGES = {"publish"}  # I/O-bound stages: retried with backoff (also any stage touching s3://)


class WorkspaceBusy(RuntimeError):
    """Another pipeline run (or DVC command) holds the workspace."""


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero; the message holds its error output."""


@dataclass
class Stage:
    name: str  # DVC address: `pretrain`, `finetune@authors`
    cmd: str
    metrics: list[str] = field(default_factory=list)  # metrics files, relative to the workspace
    outs: list[str] = field(default_factory=list)
    io_bound: bool = False
    upstream: list[str] = field(default_factory=list)  # stages whose outputs it depends on
    changes: list | None = None  # DVC's status at the start ([]: up to date; None: not asked)


@contextmanager
def dvc_repo(root: Path, busy: str = "another DVC process holds {lock}") -> Iterator:
    """DVC's Repo of the workspace; DVC's lock held elsewhere -> WorkspaceBusy(busy)."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            yield repo
    except LockError:
        raise WorkspaceBusy(f"{root}: " + busy.format(lock=".dvc/tmp/lock")) from None


def _name(s, root: Path) -> str:
    """A stage's address as `dvc repro` in `root` sees it."""
    dvcfile = os.path.relpath(s.path, root)
    return s.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{s.name}"


def _status(repo, root: Path, names: set[str] | None = None) -> dict[str, list]:
    """What DVC's status says changed in each stale stage (all, or those in `names`), by
    name: `Repo.status` is `Stage.status` over the index's stages; asked per stage here,
    so that a re-check costs only the stages it is about. Call under `lock_repo`."""
    out = {}
    for s in repo.index.stages:
        if names is None or _name(s, root) in names:
            out.update({_name(s, root): v for v in s.status(check_updates=True).values()})
    return out


def read_stages(root: str | Path, status: bool = False) -> list[Stage]:
    """Every stage of the workspace's dvc.yaml, dependencies first, else in dvc.yaml order;
    with `status`, what DVC says changed in each (`Stage.changes`)."""
    import networkx as nx
    from dvc.repo import lock_repo

    root = Path(root).resolve()
    # DVC's lock held once for status and DAG: one index (a reset per `Repo.status` call)
    with dvc_repo(root) as repo, lock_repo(repo) if status else nullcontext():
        changed = _status(repo, root) if status else {}
        position = {s: i for i, s in enumerate(repo.index.stages)}  # dvc.yaml order
        graph = repo.index.graph.reverse()  # DVC's edges point from a stage to its dependencies
        order = nx.lexicographical_topological_sort(graph, key=lambda s: position.get(s, 0))
        stages = []
        for s in order:
            if not getattr(s, "cmd", None):
                continue  # a `.dvc` data file, not a stage
            paths = [o.def_path for o in s.outs] + [str(d.def_path) for d in s.deps]
            stages.append(
                Stage(
                    name=_name(s, root),
                    cmd=s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd),
                    metrics=[o.def_path for o in s.outs if o.metric],
                    outs=[o.def_path for o in s.outs],
                    io_bound=s.name.split("@")[0] in IO_STAGES
                    or any("://" in p for p in [*paths, str(s.cmd)]),
                    upstream=[
                        _name(u, root) for u in graph.predecessors(s) if getattr(u, "cmd", None)
                    ],
                    changes=changed.get(_name(s, root), []) if status else None,
                )
            )
    return stages


def stale_now(root: Path, names: set[str]) -> set[str]:
    """Those of `names` that DVC says are stale now (`dvc repro` would run them)."""
    from dvc.repo import lock_repo

    with dvc_repo(root) as repo, lock_repo(repo):
        return set(_status(repo, root, names))


@contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    """Hold the workspace for one pipeline run; fail clearly if another run has it."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise WorkspaceBusy(
                f"{path}: another genpt pipeline run is using this workspace ({holder}); "
                "wait for it to finish or use another clone"
            ) from None
        f.truncate(0)
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def write_params(root: Path, overrides: list[str]) -> None:
    """Apply `key=value` overrides to params.yaml as `dvc exp run -S` does: validated, atomic."""
    from dvc.utils.serialize import dumps_yaml, parse_yaml_for_update

    from genpt.io import atomic_write_text
    from genpt.params import apply_override, load_params

    path = root / "params.yaml"
    load_params(path, overrides)  # bad keys / types fail here, before params.yaml changes
    if not overrides:
        return
    busy = "a DVC command holds {lock}; try again later"
    with dvc_repo(root, busy) as repo, repo.lock:  # never change params under a `dvc repro`
        data = parse_yaml_for_update(path.read_text(encoding="utf-8"), str(path))
        for o in overrides:
            apply_override(data, o)
        atomic_write_text(path, dumps_yaml(data))


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TQDM_DISABLE", "1")
    bindir = str(Path(sys.executable).parent)  # so dvc.yaml's `genpt ...` resolves to this venv
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    return env


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}" if not prefix else f"{prefix}.{k}"))
        return out
    return {prefix: obj}


def stage_metrics(root: Path, stage: Stage) -> dict[str, float | int | str]:
    """The stage's metrics files (dvc.yaml `metrics:`) flattened; keys `file:key` if several."""
    out = {}
    for rel in stage.metrics:
        p = root / rel
        if p.suffix == ".json" and p.exists():
            for k, v in _flatten(json.loads(p.read_text(encoding="utf-8"))).items():
                out[k if len(stage.metrics) == 1 else f"{rel}:{k}"] = v
    return out


def published_uri(root: Path, stage: Stage) -> str | None:
    """The bundle URI a stage reports in a JSON output with a `uri` key (publish's receipt)."""
    for rel in stage.outs:
        p = root / rel
        if p.suffix == ".json" and p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("uri"), str):
                return data["uri"]
    return None


def loggers() -> tuple[logging.Logger, logging.Logger]:
    """(brief, full): one line per stage, to the console and the run's Prefect log; and
    each stage's complete output, to the Prefect log only (also the console if verbose)."""
    from prefect.logging.handlers import APILogHandler

    from genpt.logs import verbose

    out = []
    for name, console in (("genpt.pipeline", True), ("genpt.stage", verbose())):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.setLevel(logging.INFO)
        lg.propagate = False
        lg.addHandler(APILogHandler())
        if console:
            h = logging.StreamHandler(sys.stderr)
            h.setFormatter(logging.Formatter("%(message)s"))
            lg.addHandler(h)
        out.append(lg)
    return out[0], out[1]


@task(retries=0, cache_policy=NO_CACHE)  # DVC, not Prefect, decides what is up to date
def run_stage(stage: Stage, root: str, force: bool = False, stale: bool = True):
    """One stage: if DVC said it is `stale`, through DVC in its own process
    (flows/dvc_stage.py), its output streamed to the Prefect log; else reported as
    up to date (state "Up to date") without a process."""
    brief, _ = loggers()
    t0 = time.perf_counter()
    ran = stale and _reproduce(stage, root, force, brief)
    seconds = round(time.perf_counter() - t0, 1)
    brief.info("%-24s %-10s %s", stage.name, "ran" if ran else "up to date", duration(seconds))
    metrics, uri = stage_metrics(Path(root), stage), published_uri(Path(root), stage)
    if ran:  # an up-to-date stage's artifacts are those of the run that made its outputs
        stage_artifacts(stage, Path(root), metrics, uri)
    out = {"stage": stage.name, "ran": ran, "process": stale, "seconds": seconds,
           "metrics": metrics, "uri": uri}  # fmt: skip
    return out if ran else Completed(name="Up to date", message="DVC: up to date", data=out)


def stage_artifacts(stage: Stage, root: Path, metrics: dict, uri: str | None) -> None:
    """The stage's metrics and table.json as table artifacts, its bundle URI as a link."""
    if metrics:
        create_table_artifact(
            [{"metric": k, "value": v} for k, v in metrics.items()],
            key=f"{_slug(stage.name)}-metrics",
            description=f"metrics of stage {stage.name}",
        )
    for rel in stage.outs:  # a stage's table (e.g. the ablation report) as a table artifact
        if Path(rel).name == "table.json" and (root / rel).is_file():
            rows = json.loads((root / rel).read_text(encoding="utf-8"))
            create_table_artifact(rows, key=f"{_slug(stage.name)}-table", description=rel)
    if uri:
        create_link_artifact(uri, link_text=uri, key=f"{_slug(stage.name)}-bundle")


def _reproduce(stage: Stage, root: str, force: bool, brief: logging.Logger) -> bool:
    """`dvc repro --single-item STAGE` in a process of its own; whether the stage ran."""
    _, full = loggers()
    cmd = [sys.executable, "-m", "flows.dvc_stage", stage.name]
    tail: deque[str] = deque(maxlen=25)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genpt-stage-") as tmp:
        result = Path(tmp) / "result.json"
        full.info("$ dvc repro --single-item %s%s", stage.name, " --force" if force else "")
        with subprocess.Popen(
            [*cmd, str(result), *(["--force"] if force else [])],
            cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ) as proc:  # fmt: skip
            for line in proc.stdout:
                line = line.rstrip()
                full.info("%s", line)
                tail.append(line)
        if proc.returncode == BUSY:
            raise WorkspaceBusy(
                f"stage {stage.name}: another DVC process holds {root}/.dvc/tmp/lock"
            )
        if proc.returncode:
            # from the first error line on: the stage's own message and its details
            first = next((i for i, ln in enumerate(tail) if "error" in ln.lower()), 0)
            errors = list(tail)[first:]
            brief.error("%-24s failed after %s", stage.name, duration(time.perf_counter() - t0))
            raise StageFailed(
                f"stage {stage.name} failed (exit {proc.returncode}):\n" + "\n".join(errors)
            )
        return bool(json.loads(result.read_text(encoding="utf-8"))["ran"])


def dataset_of(stage: str, datasets: set[str]) -> str | None:
    """The dataset of `STAGE@NAME` (foreach) or `STAGE@NAME-ARM` (matrix) stages."""
    key = stage.partition("@")[2]
    found = [d for d in datasets if key == d or key.startswith(f"{d}-")]
    return max(found, key=len) if found else None


def common_overrides(
    preset: str | None, lm_coef: float | None, steps: int | None, overrides: list[str] | None
) -> list[str]:
    """Flow parameters as DVC-style `key=value` overrides of params.yaml."""
    from genpt.params import as_overrides

    sets = {"model.preset": preset, "finetune.lm_coef": lm_coef, "pretrain.steps": steps}
    return as_overrides(sets) + list(overrides or [])


@contextmanager
def applied_params(root: Path, overrides: list[str], source: Path | None = None) -> Iterator[None]:
    """params.yaml with `overrides` (on the params of `source`, e.g. a recipe, if given) for
    the block's duration, then as it was: the flow's parameters change this run, not the
    file the user owns (dvc.lock records the values the stages ran with, so a later plain
    run re-runs what they changed)."""
    from genpt.io import atomic_write_text

    path = root / "params.yaml"
    before = path.read_bytes()
    try:
        if source:
            atomic_write_text(path, source.read_text(encoding="utf-8"))
        write_params(root, overrides)
        yield
    finally:
        if path.read_bytes() != before:
            from genpt.io import atomic_write_text

            atomic_write_text(path, before.decode("utf-8"))


@flow(name="genpt-pipeline")
def pipeline(
    preset: str | None = None,
    lm_coef: float | None = None,
    steps: int | None = None,
    datasets: list[str] | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    workspace: str = ".",
    params_file: str | None = None,
) -> dict:
    """Run every dvc.yaml stage in order, each as a task; what DVC says is up to date is
    reported as such, without a process.

    preset: model.preset; lm_coef: finetune.lm_coef (lambda); steps: pretrain.steps;
    datasets: only these datasets' `STAGE@NAME` stages (default: all);
    overrides: more `section.key=value` (like `dvc exp run -S`), for this run only:
    params.yaml is left as it was; force: rerun every stage;
    workspace: the DVC workspace (a clone of this repo);
    params_file: run with this file's params (e.g. recipes/cpu-hour.yaml) instead of the
    workspace's params.yaml, which is restored after the run.
    """
    from genpt import summary
    from genpt.params import load_params

    brief, _ = loggers()
    root = Path(workspace).resolve()
    results = []
    with workspace_lock(root):
        sets = common_overrides(preset, lm_coef, steps, overrides)
        source = Path(params_file).resolve() if params_file else None
        params = load_params(source or root / "params.yaml", sets)  # validates first
        art = Path(root, params.paths.artifacts)  # relative to the workspace, not the cwd
        rooted = params.model_copy(
            update={"paths": params.paths.model_copy(update={"artifacts": str(art)})}
        )
        unknown = set(datasets or []) - set(params.datasets)
        if unknown:
            raise ValueError(
                f"unknown datasets {sorted(unknown)}; configured: {sorted(params.datasets)}"
            )
        if sets or source:
            given = " ".join([*([str(source)] if source else []), *sets])
            brief.info("params for this run: %s (params.yaml is restored after it)", given)
        skip = set(params.datasets) - set(datasets) if datasets else set()
        with applied_params(root, sets, source):
            stages = read_stages(root, status=not force)  # DVC: what is stale, at once
            stale = {s.name for s in stages if force or s.changes}
            for stage in stages:
                if dataset_of(stage.name, set(params.datasets)) in skip:
                    brief.info("%-24s not run (dataset not selected)", stage.name)
                    continue
                task_ = run_stage.with_options(
                    name=f"stage-{stage.name}",
                    task_run_name=stage.name,
                    retries=3 if stage.io_bound else 0,
                    retry_delay_seconds=exponential_backoff(backoff_factor=10)
                    if stage.io_bound
                    else 0,
                    retry_jitter_factor=0.5 if stage.io_bound else None,
                )
                out = task_(stage, str(root), force, stage.name in stale)
                results.append(out.result() if isinstance(out, State) else out)  # "Up to date"
                below = {s.name for s in stages if stage.name in s.upstream} - stale
                if results[-1]["ran"] and below:  # its outputs may have changed: ask DVC again
                    stale |= stale_now(root, below)
                summary.write_run(rooted, [
                    {k: r[k] for k in ("stage", "ran", "seconds")} for r in results
                ])  # fmt: skip
    table = [
        {"stage": r["stage"], "metric": k, "value": v}
        for r in results
        for k, v in r["metrics"].items()
    ]
    if table:
        create_table_artifact(table, key="genpt-metrics", description="metrics of every stage")
    text = summary.render(rooted)
    create_markdown_artifact(
        f"# genpt pipeline\n\n```\n{text}\n```\n", key="genpt-summary", description="pipeline run"
    )
    return {"stages": {r["stage"]: r for r in results}, "summary": text}

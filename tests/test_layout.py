"""The tree's own rules: one place sets the offline environment, one names every artifact
path (genpt/artifacts.py), and no import runs from a lower layer up to a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

from genpt.offline import OFFLINE_ENV

ROOT = Path(__file__).resolve().parents[1]


def python_files():
    for d in ("genpt", "tasks", "model", "flows", "bench", "data", "examples"):
        yield from sorted((ROOT / d).rglob("*.py"))


def test_offline_variables_are_set_only_in_genpt_offline():
    """Every other module calls genpt.offline.apply() (.ci/run and the Dockerfile may
    set them for the whole process)."""
    named = {}
    for f in python_files():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Constant) and node.value in OFFLINE_ENV:
                named.setdefault(str(f.relative_to(ROOT)), []).append(node.value)
    assert set(named) == {"genpt/offline.py"}, named


# --- every artifact path defined once: genpt/artifacts.py, and dvc.yaml checked against it ----

DVC_VARS = {"${key}": "{name}", "${item.dataset}": "{name}", "${item.arm}": "{arm}"}


def dvc_artifact_paths() -> set[str]:
    """Every path under paths.artifacts that dvc.yaml names (deps, outs, metrics, plots),
    as a layout template."""
    import yaml

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    found = set()
    for stage in dvc["stages"].values():
        body = stage.get("do", stage)
        for kind in ("deps", "outs", "metrics", "plots"):
            for entry in body.get(kind, []):
                found |= set(entry) if isinstance(entry, dict) else {entry}
    out = set()
    for p in found:
        if p.startswith("${paths.artifacts}/"):
            p = p.removeprefix("${paths.artifacts}/")
            for var, name in DVC_VARS.items():
                p = p.replace(var, name)
            out.add(p)
    for plot in dvc.get("plots", []):  # top-level plots spell artifacts/ itself
        for spec in plot.values():
            out |= {p.removeprefix("artifacts/") for p in spec.get("y", {})}
    return out


def test_dvc_yaml_spells_the_layout_paths():
    """Each dvc.yaml artifact path is a genpt/artifacts.py path (or a file under one), and each
    layout path is in dvc.yaml or under one of its paths: a rename is caught both ways."""
    from genpt import artifacts

    templates = {a.template for a in artifacts.PATHS.values()}
    dvc = dvc_artifact_paths()

    def under(p: str, roots: set[str]) -> bool:
        return any(p == r or p.startswith(r + "/") for r in roots)

    assert not {p for p in dvc if not under(p, templates)}, "dvc.yaml paths not in layout"
    not_dvc = {artifacts.run.template}  # written by the flow, not by a stage
    parents = {t for t in templates if any(p.startswith(t + "/") for p in dvc)}  # e.g. report/
    missing = {t for t in templates - not_dvc - parents if not under(t, dvc)}
    assert not missing, "layout paths not in dvc.yaml"
    from model.pretrain import CKPT

    assert artifacts.pretrain_ckpt.name == CKPT


def test_no_artifact_path_literal_outside_the_layout():
    """`params.artifacts("...")` with a literal: only genpt/artifacts.py builds artifact paths."""
    found = []
    for f in python_files():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "artifacts"
                and any(isinstance(a, ast.Constant | ast.JoinedStr) for a in node.args)
            ):
                found.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert found == [], found


# --- layers: model < genpt (library) < tasks (stages) < flows < genpt.cli ------------------

LAYERS = {"model": 0, "genpt": 1, "tasks": 2, "flows": 3, "genpt.cli": 4}


def layer(module: str) -> int:
    return LAYERS.get(module, LAYERS[module.split(".")[0]])


def upward_imports() -> list[str]:
    """Imports from a lower layer to a higher one, as `importer -> imported`."""
    from genpt.deps import PACKAGES, imports

    out = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out += [f"{name} -> {m}" for m in sorted(imports(name)) if layer(m) > layer(name)]
    return out


def test_no_import_runs_back_up():
    """The CLI sits above the flow, the flow above the stages, the stages above the library,
    the library above model/: nothing imports a higher layer."""
    assert upward_imports() == []


def test_upward_import_check_can_fail(monkeypatch):
    from genpt import deps

    real = deps.imports.__wrapped__
    monkeypatch.setattr(
        deps, "imports", lambda n: real(n) | ({"flows.pipeline"} if n == "genpt.summary" else set())
    )
    assert upward_imports() == ["genpt.summary -> flows.pipeline"]


ENTRY_POINTS = {"run", "fetch"}  # a stage's run; publish's fetch (`genpt fetch`)


def test_only_tasks_and_the_cli_import_a_stage():
    """Outside tasks/, the CLI dispatches to the stages; bench/ and examples/ may run a
    stage, never borrow its internals."""
    from genpt.deps import imports

    stages = {f"tasks.{f.stem}" for f in (ROOT / "tasks").glob("*.py") if f.stem != "__init__"}
    for f in python_files():
        rel = f.relative_to(ROOT)
        if rel.parts[0] == "tasks" or str(rel) == "genpt/cli.py":
            continue
        tree = ast.parse(f.read_text(), str(f))
        if rel.parts[0] in ("genpt", "model", "flows"):
            name = ".".join(rel.with_suffix("").parts)
            assert not imports(name) & stages, f"{rel} imports {sorted(imports(name) & stages)}"
            continue
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "tasks":
                aliases |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks."):
                raise AssertionError(f"{rel}: from {node.module} import ... (a stage's internals)")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) in aliases:
                assert node.attr in ENTRY_POINTS, f"{rel}: {node.value.id}.{node.attr}"

"""dvc.yaml's code `deps:` and `params:` match what each stage's code imports and reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from genpt.deps import PACKAGES, code_deps, params_read

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# stage -> the modules its command runs (`genpt pretrain --auto-resume` adds genpt/resume.py)
ENTRY = {"pretrain": ("tasks.pretrain", "genpt.resume")}


def body(stage: str) -> dict:
    s = STAGES[stage]
    return s.get("do", s)  # foreach stages


def modules(stage: str) -> tuple[str, ...]:
    cmd = body(stage)["cmd"].split()
    assert cmd[:2] == ["genpt", stage], cmd  # each stage runs its own command
    return ENTRY.get(stage, (f"tasks.{stage}",))


def declared_code(stage: str) -> list[str]:
    return [d for d in body(stage)["deps"] if d.split("/")[0] in PACKAGES]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_match_the_imports(stage):
    derived = {f for m in modules(stage) for f in code_deps(m)}
    declared = declared_code(stage)
    covered = set()
    for d in declared:
        files = (
            {str(p.relative_to(ROOT)) for p in (ROOT / d).rglob("*.py")}
            if (ROOT / d).is_dir()
            else {d}
        )
        assert files & derived, f"{stage}: stale dep {d} (nothing the stage imports)"
        covered |= files
    missing = sorted(derived - covered)
    assert not missing, f"{stage}: dvc.yaml deps lack {missing}"


def ships_all_params(stage: str) -> bool:
    """Whether the stage's code dumps the whole of params (`params.model_dump`)."""
    from genpt import deps

    for m in {r for e in modules(stage) for r in deps.modules(e)} - {"genpt.params"}:
        for node in ast.walk(ast.parse(deps.module_file(m).read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "model_dump"
                and isinstance(node.value, ast.Name)
                and node.value.id == "params"
            ):
                return True
    return False


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_params_match_the_sections_read(stage):
    params = body(stage)["params"]
    read = {s for m in modules(stage) for s in params_read(m)}
    if params == [{"params.yaml": None}]:  # all of them: right only if it ships them all
        assert ships_all_params(stage), f"{stage}: lists all of params.yaml, reads {sorted(read)}"
        assert read <= set(yaml.safe_load((ROOT / "params.yaml").read_text())), read
        return
    declared = {p.split(".")[0] for p in params}
    assert read == declared, f"{stage}: code reads {sorted(read)}, dvc.yaml lists {params}"


def test_resume_fingerprints_the_derived_training_code():
    from genpt import resume

    assert resume.TRAINING == "tasks.pretrain"
    assert {"model/pretrain.py", "model/gpt.py", "genpt/ingest/tokens.py"} <= set(
        code_deps(resume.TRAINING)
    )


def test_stages_never_import_each_other():
    from genpt.deps import imports

    stages = {f"tasks.{s}" for s in STAGES}
    for s in stages:
        assert not (imports(s) & stages), f"{s} imports {sorted(imports(s) & stages)}"


def test_derivation_sees_a_new_import(tmp_path, monkeypatch):
    """The check can fail: a module importing one more repo module changes the list."""
    from genpt import deps

    assert "model/zeroshot.py" not in code_deps("tasks.report")
    real = deps.imports.__wrapped__

    def patched(name):
        extra = {"model.zeroshot"} if name == "tasks.report" else set()
        return frozenset(real(name) | extra)

    monkeypatch.setattr(deps, "imports", patched)
    assert "model/zeroshot.py" in deps.code_deps("tasks.report")

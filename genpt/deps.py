"""What a stage's code is, derived from its imports: one list for dvc.yaml and resume.

code_deps("tasks.pretrain") walks the stage module's import statements (top level and
inside functions) through every repo-local module it reaches (model, genpt, tasks, flows) and
returns their files. A package's __init__.py counts when something is imported from it
directly (`from genpt.bundle import write_manifest`), not when only a submodule is
(`from genpt.bundle.manifest import sha256_file`). tests/test_dvc_deps.py checks
dvc.yaml's code `deps:` and `params:` against code_deps and params_read;
genpt/resume.py fingerprints code_deps("tasks.pretrain").
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "genpt", "tasks", "flows")


def module_file(name: str) -> Path | None:
    """The repo file of module `name` (a package: its __init__.py), or None if not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


@cache
def imports(name: str) -> frozenset[str]:
    """Repo-local modules that module `name` imports (anywhere in its code)."""
    path = module_file(name)
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            subs = [f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")]
            out.update(subs)
            if len(subs) < len(node.names):  # names defined in `base` itself
                out.add(base)
    return frozenset(m for m in out if module_file(m))


def _needed(path: Path) -> bool:
    """False for a package __init__.py that holds only a docstring."""
    if path.name != "__init__.py":
        return True
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def modules(name: str) -> list[str]:
    """`name` and every repo-local module it reaches through imports, sorted."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(imports(m))
    return sorted(seen)


def code_deps(name: str) -> list[str]:
    """The repo files (relative paths) of `name` and every module it reaches, sorted."""
    files = {module_file(m) for m in modules(name)}
    return sorted(str(f.relative_to(ROOT)) for f in files if _needed(f))


# --- params -----------------------------------------------------------------------------

# Params methods and the sections they read
METHODS = {"dataset": {"datasets"}, "finetune_for": {"finetune", "finetune_by_dataset", "datasets"}}
NOT_PARAMS = {"artifacts", "model_dump", "model_copy"}  # paths.artifacts: the outs' paths


def params_read(name: str) -> set[str]:
    """Top-level params.yaml sections that `params.X` reads in the tasks modules `name`
    reaches (the stage and the tasks library it hands `params` to)."""
    from genpt.params import Params

    alias = {k: (f.alias or k) for k, f in Params.model_fields.items()}
    out: set[str] = set()
    for m in modules(name):
        if not m.startswith(("tasks.", "genpt.")) or m == "genpt.params":
            continue
        for node in ast.walk(ast.parse(module_file(m).read_text())):
            if not (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "params"
            ):
                continue
            if node.attr in alias:
                out.add(alias[node.attr])
            elif node.attr in METHODS:
                out |= METHODS[node.attr]
            elif node.attr not in NOT_PARAMS:
                raise ValueError(f"{m}: params.{node.attr}: unknown section or method")
    return out

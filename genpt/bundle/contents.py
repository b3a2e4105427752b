"""What a published bundle holds: the ONNX export (else the Hugging Face checkpoints),
the tokenizer, params.yaml, metrics, plots, the report, a model card (README.md) and
manifest.json with lineage (git commit, dvc.lock hashes, params). Stage `publish` builds
it here and uploads it with genpt.bundle (see genpt/bundle/__init__.py)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml

from genpt import artifacts, bundle
from genpt.io import read_json, write_json
from genpt.modelcard import model_card, render_plots
from genpt.params import Params


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def default_version() -> str:
    """UTC time + short git sha, e.g. 20261127T141500Z-8c3df4d (sortable, unique enough)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    sha = _git("rev-parse", "--short=7", "HEAD")
    return f"{stamp}-{sha}" if sha else stamp


def lineage(params: Params, lock: str | Path = "dvc.lock") -> dict:
    """git commit, the md5 of every dep/out in dvc.lock (data, tokens, checkpoints), params."""
    stages = {}
    if Path(lock).exists():
        for name, st in (yaml.safe_load(Path(lock).read_text()) or {}).get("stages", {}).items():
            stages[name] = {
                kind: {e["path"]: e.get("md5") for e in st.get(kind, [])}
                for kind in ("deps", "outs")
            }
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "dvc_lock": stages,
        "params": params.model_dump(mode="json"),
    }


def _copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise FileNotFoundError(f"{src}: missing (run the pipeline first: `dvc repro`)")
    shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)


def build_bundle(
    params: Params, root: Path, name: str, version: str, extra: dict | None = None
) -> dict:
    """Lay the bundle out in `root` (a local staging dir); returns its manifest.

    extra: more top-level manifest keys (e.g. the result of a pre-upload check).
    """
    export = params.artifacts(params.publish.export_dir)
    fmt = "onnx" if export.is_dir() and any(export.iterdir()) else "hf"
    if fmt == "onnx":
        _copy(export, root / bundle.EXPORT_DIR)
    else:
        _copy(artifacts.pretrain_hf(params), root / "pretrain")
        for n in params.datasets:
            _copy(artifacts.finetune(params, n), root / "finetune" / n)
    _copy(artifacts.tokenizer(params), root / "tokenizer")
    if artifacts.report(params).is_dir():
        _copy(artifacts.report(params), root / "report")

    tok = read_json(artifacts.tokens_manifest(params)) or {}
    metrics = {
        "pretrain": read_json(artifacts.pretrain_metrics(params)) or {},
        "finetune": {
            n: read_json(artifacts.finetune_metrics(params, n)) or {} for n in params.datasets
        },
        "eval": {n: read_json(artifacts.eval_metrics(params, n)) or {} for n in params.datasets},
        "tokens": {
            "files": tok.get("files"),
            "vocab_size": tok.get("vocab_size"),
            "train_tokens": sum(s["tokens"] for s in tok.get("train", [])),
            "val_tokens": sum(s["tokens"] for s in tok.get("val", [])),
        },
    }
    for key, value in metrics.items():
        write_json(root / "metrics" / f"{key}.json", value)
    (root / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    plots = render_plots(params, root / "plots")
    lin = lineage(params)
    md = root / "report" / artifacts.report_md.name
    report = md.read_text(encoding="utf-8") if md.exists() else None
    gate = (extra or {}).get("gate")
    card = model_card(params, name, version, fmt, metrics, plots, lin, report, gate)
    (root / "README.md").write_text(card, encoding="utf-8")
    return bundle.build_manifest(
        root,
        name=name,
        version=version,
        format=fmt,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        lineage=lin,
        **(extra or {}),
    )

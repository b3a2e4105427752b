"""Where the models are inside a bundle directory."""

from __future__ import annotations

from pathlib import Path

from genpt.errors import GenptError

EXPORT_DIR = "onnx"  # the export bundle's place inside a published version
MODEL_INFO = "export.json"  # marks a model directory


class BundleError(GenptError, ValueError):
    """A bundle holds no such model, or a model is ambiguous."""


def models(root: Path) -> Path:
    """The directory holding the model directories: root, or root/onnx in a published version."""
    sub = root / EXPORT_DIR
    return sub if not (root / MODEL_INFO).is_file() and sub.is_dir() else root


def model_dir(root: Path, name: str | None) -> Path:
    """The model `name` in a bundle; without a name, the bundle's only task model."""
    if (root / MODEL_INFO).is_file() and name is None:
        return root  # a single-model bundle
    base = models(root)
    names = sorted(p.name for p in base.iterdir() if (p / MODEL_INFO).is_file())
    if name is None:
        tasks = [m for m in names if m != "lm"]
        if len(tasks) != 1:
            raise BundleError(f"{root}: choose a model with --model (has: {names})")
        name = tasks[0]
    if name not in names:
        raise BundleError(f"{root}: no model {name!r} (has: {names})")
    return base / name

"""Labelled datasets -> canonical records, through HF `datasets`.

Canonical schema per task type (a user's own files in this schema need no code):
  classification   text, label
  entailment       premise, hypothesis, label
  similarity       text_a, text_b, label (class) or score (float)
  multiple_choice  context, question, choices (list of str), label (index)

An adapter, named in params.yaml (`datasets.NAME.adapter`), turns a source format
into these records.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tasks.params import DatasetConfig

REQUIRED: dict[str, tuple[str, ...]] = {
    "classification": ("text", "label"),
    "entailment": ("premise", "hypothesis", "label"),
    "similarity": ("text_a", "text_b"),
    "multiple_choice": ("context", "choices", "label"),
}


class DatasetError(ValueError):
    """Bad labelled data; the message names file, row and rule."""


def _builder(path: str) -> tuple[str, dict]:
    suffix = Path(path.removesuffix(".gz")).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "json", {}
    if suffix in (".csv",):
        return "csv", {}
    if suffix in (".tsv",):
        return "csv", {"sep": "\t"}
    if suffix == ".parquet":
        return "parquet", {}
    raise DatasetError(f"{path}: unsupported format {suffix!r} (jsonl, json, csv, tsv, parquet)")


def load_canonical(path: str) -> list[dict]:
    """Records of a canonical-schema file (JSONL, CSV/TSV or parquet)."""
    if not Path(path).exists():
        raise DatasetError(f"{path}: file not found")
    import datasets

    datasets.disable_progress_bars()
    builder, kwargs = _builder(path)
    try:
        ds = datasets.load_dataset(builder, data_files=path, split="train", **kwargs)
    except Exception as e:  # datasets wraps parse errors in several types
        raise DatasetError(f"{path}: cannot be parsed as {builder}: {e}") from None
    return ds.to_list()


ADAPTERS: dict[str, Callable[[str], list[dict]]] = {"canonical": load_canonical}


def check_records(records: list[dict], cfg: DatasetConfig, path: str) -> None:
    """Required fields present and non-empty, labels in the declared set, choices consistent."""
    if not records:
        raise DatasetError(f"{path}: no rows")
    need = REQUIRED[cfg.task_type]
    if cfg.task_type == "similarity":
        need = (*need, "label" if cfg.labels else "score")
    for i, r in enumerate(records, start=1):
        for key in need:
            if r.get(key) is None or r.get(key) == "":
                raise DatasetError(f"{path}: row {i}: required field {key!r} is missing or empty")
        if cfg.labels and str(r["label"]) not in cfg.labels:
            raise DatasetError(
                f"{path}: row {i}: label {r['label']!r} not in the declared labels {cfg.labels}"
            )
        if cfg.task_type == "multiple_choice":
            n = len(r["choices"])
            if n < 2 or not 0 <= int(r["label"]) < n:
                raise DatasetError(
                    f"{path}: row {i}: label {r['label']} is not an index into its {n} choices"
                )


def load_split(cfg: DatasetConfig, split: str) -> list[dict]:
    """Canonical, checked records of the dataset's `split` ('train' or 'dev')."""
    path = getattr(cfg, split)
    if cfg.adapter not in ADAPTERS:
        raise DatasetError(f"unknown adapter {cfg.adapter!r}; known: {sorted(ADAPTERS)}")
    records = ADAPTERS[cfg.adapter](path)
    check_records(records, cfg, path)
    return records

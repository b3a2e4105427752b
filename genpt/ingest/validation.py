"""Data validation: Great Expectations suites over the corpus and the labelled data.

One suite per table, run as a GX checkpoint on a pandas frame (ephemeral context):
  corpus           one row per document (a text file, JSONL line, Parquet row): non-empty,
                   valid UTF-8, NUL and control-character rate, document and line length
                   bounds, duplicate documents. The facts are computed while the corpus
                   streams past, in worker processes (scan.py): GX never sees the text;
  DATASET/SPLIT    one row per record: required columns non-null, labels in the declared
                   set, choice counts, text lengths; dev/test rows also carry leakage
                   flags (same text in train; text found in the pre-training corpus).
Thresholds: the `validate` section of params.yaml. validate() returns the summary and
one line per failed expectation (file, rows, expectation); the stage (tasks/validate.py)
writes them and raises DataValidationError.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np

from genpt.errors import GenptError
from genpt.ingest.corpus import iter_documents
from genpt.ingest.leakage import EvalNgrams, eval_texts, leak_flags, record_keys
from genpt.ingest.loaders import DatasetError, read_split, split_path, where
from genpt.ingest.scan import scan_corpus
from genpt.params import CorpusConfig, DatasetConfig, ValidateConfig
from model.schema import REQUIRED, TEXT_FIELDS, required_fields, type_error

SHOW_ROWS = 5  # rows named per failed expectation


class DataValidationError(GenptError, ValueError):
    """Failed expectations; the message names file, rows and expectation."""


# --- frames ----------------------------------------------------------------------------------


def corpus_expectations(v: ValidateConfig) -> list:
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToBeNull(column="utf8_error"),
        E.ExpectColumnValuesToBeBetween(
            column="chars", min_value=v.min_doc_chars, max_value=v.max_doc_chars
        ),
        E.ExpectColumnValuesToBeBetween(column="longest_line", max_value=v.max_line_chars),
        E.ExpectColumnValuesToBeBetween(column="nul", max_value=0),
        E.ExpectColumnValuesToBeBetween(column="control_rate", max_value=v.max_control_rate),
        E.ExpectColumnValuesToBeNull(column="duplicate_of", mostly=1 - v.max_duplicate_docs),
    ]


def split_rows(
    records: list[dict], task_type: str, labels: list[str] | None = None
) -> tuple[list[str], dict[str, list]]:
    """Row labels and columns of a split's frame (empty strings -> None).

    `schema_error` names the first field of the wrong type or shape (model/schema.py),
    e.g. choices given as a string; the other columns read only well-typed values."""
    fields = [k for k in REQUIRED[task_type] if k != "choices"]
    fields += [k for k in TEXT_FIELDS[task_type] if k not in fields]
    fields += [k for k in ("label", "score") if k not in fields]
    present = set().union(*(r.keys() for r in records)) if records else set()
    cols: dict[str, list] = {}
    for k in fields:
        if k not in present:
            continue
        vals = [r.get(k) for r in records]
        vals = [None if v is None or (isinstance(v, str) and not v.strip()) else v for v in vals]
        if k == "score":  # a non-number is a schema_error; the range check skips it
            vals = [v if isinstance(v, int | float) else None for v in vals]
        cols[k] = [str(v) if k != "score" and v is not None else v for v in vals]
    if task_type == "multiple_choice":
        cols["prompt"] = [
            " ".join(str(r.get(k) or "") for k in ("context", "question")).strip() or None
            for r in records
        ]
        if "choices" in present:
            ch = [c if isinstance(c := r.get("choices"), list) else [] for r in records]
            cols["choices"] = [r.get("choices") or None for r in records]
            cols["n_choices"] = [len(c) for c in ch]
            cols["empty_choices"] = [sum(1 for x in c if not str(x or "").strip()) for c in ch]
            cols["label_index"] = [
                int(r["label"]) if str(r.get("label", "")).lstrip("-").isdigit() else -1
                for r in records
            ]
    cols["schema_error"] = [type_error(r, task_type, labels) for r in records]
    return [where(r, i) for i, r in enumerate(records, 1)], cols


def split_expectations(cfg: DatasetConfig, v: ValidateConfig, columns: list[str]) -> list:
    import great_expectations as gx

    E = gx.expectations
    need = list(required_fields(cfg.task_type, cfg.labels))
    ex = [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectTableColumnsToMatchSet(column_set=need, exact_match=False),
    ]
    if "schema_error" in columns:
        ex.append(E.ExpectColumnValuesToBeNull(column="schema_error"))
    ex += [E.ExpectColumnValuesToNotBeNull(column=k) for k in need if k in columns]
    text = ["prompt"] if cfg.task_type == "multiple_choice" else TEXT_FIELDS[cfg.task_type]
    ex += [
        E.ExpectColumnValueLengthsToBeBetween(
            column=k, min_value=v.min_text_chars, max_value=v.max_text_chars
        )
        for k in text
        if k in columns
    ]
    if cfg.task_type == "multiple_choice":
        ex.append(E.ExpectColumnValuesToNotBeNull(column="prompt"))
        if "n_choices" in columns:
            ex += [
                E.ExpectColumnValuesToBeBetween(
                    column="n_choices", min_value=v.min_choices, max_value=v.max_choices
                ),
                E.ExpectColumnValuesToBeBetween(column="empty_choices", max_value=0),
                E.ExpectColumnValuesToBeBetween(column="label_index", min_value=0),
                E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="n_choices", column_B="label_index"
                ),
            ]
    elif cfg.labels and "label" in columns:
        ex.append(E.ExpectColumnValuesToBeInSet(column="label", value_set=list(cfg.labels)))
    if "score" in columns and not cfg.labels:
        ex.append(E.ExpectColumnValuesToBeBetween(column="score", min_value=0))
    if "in_train" in columns:
        ex.append(
            E.ExpectColumnValuesToBeInSet(
                column="in_train", value_set=[False], mostly=1 - v.max_train_dev_overlap
            )
        )
    if "in_corpus" in columns:
        ex.append(
            E.ExpectColumnValuesToBeInSet(
                column="in_corpus", value_set=[False], mostly=1 - v.max_corpus_overlap
            )
        )
    return ex


# --- running GX ----------------------------------------------------------------------------


def _context(docs_dir: Path):
    """An ephemeral GX context whose only Data Docs site is docs_dir; its pandas source."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(Path(docs_dir).resolve()),  # GX wants it absolute
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={"genpt": site},
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    ctx = gx.get_context(project_config=config, mode="ephemeral")
    return ctx, ctx.data_sources.add_pandas("genpt")


def run_suite(ctx, source, name: str, frame, expectations: list):
    """Run one suite on a pandas frame as a GX checkpoint; its suite validation result."""
    import great_expectations as gx

    bd = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=bd, suite=suite))
    cp = ctx.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[vd],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SHOW_ROWS},
        )
    )
    return next(iter(cp.run(batch_parameters={"dataframe": frame}).run_results.values()))


def describe_failures(result, where_: str, frame, at: dict[str, str] | None = None) -> list[str]:
    """One line per failed expectation: file, rows (with values) and the expectation."""
    out = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kw = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
        name = f"{cfg.type}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
        res = r.result or {}
        if r.exception_info and r.exception_info.get("raised_exception"):
            out.append(f"{where_}: {name}: {r.exception_info.get('exception_message')}")
            continue
        rows = res.get("partial_unexpected_index_list") or []
        col = kw.get("column")
        shown = []
        for idx in rows[:SHOW_ROWS]:
            val = frame.at[idx, col] if col in frame.columns else None
            val = val.item() if isinstance(val, np.generic) else val
            val = "missing" if val is None or val != val else repr(val)  # None or NaN
            extra = f" at {frame.at[idx, at[col]]}" if at and col in at else ""
            shown.append(f"{idx} ({val}{extra})" if col else str(idx))
        if "unexpected_count" in res:
            what = f"{res['unexpected_count']} of {res.get('element_count')} rows"
            out.append(f"{where_}: {name} failed for {what}: {'; '.join(shown)}")
        else:
            out.append(f"{where_}: {name} failed (observed {res.get('observed_value')!r})")
    return out


# --- the stage -----------------------------------------------------------------------------


def records_sha256(records: list[dict]) -> str:
    """A digest of the rows as loaded, whatever the source format."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def _balance(values: list) -> dict:
    c = Counter(str(v) for v in values)
    n = sum(c.values()) or 1
    return {k: round(v / n, 4) for k, v in sorted(c.items())}


def validate(
    v: ValidateConfig,
    corpus: list[str],
    datasets: dict[str, DatasetConfig],
    docs_dir: Path,
    only: dict[str, list[str]] | None = None,
    reader: CorpusConfig | None = None,
) -> tuple[dict, list[str]]:
    """Run every suite; the summary and the failure lines (empty: all passed).

    corpus: paths.corpus, read as `reader` (params' `corpus` section) says.
    only: dataset name -> the splits to check (default: train, dev and test if set).
    """
    import pandas as pd

    t0 = time.perf_counter()
    ctx, source = _context(docs_dir)
    failures: list[str] = []
    summary: dict = {"datasets": {}}

    # The labelled splits are small: read them first, index their eval texts' n-grams,
    # then stream the corpus once through that index (genpt/ingest/scan.py).
    splits: dict[tuple[str, str], list[dict] | DatasetError] = {}
    for name, cfg in datasets.items():
        for split in (only or {}).get(name, ("train", "dev", "test")):
            if split_path(cfg, split) is not None:
                try:
                    splits[name, split] = read_split(cfg, split)
                except DatasetError as e:
                    splits[name, split] = e
    texts = (
        t
        for (name, split), recs in splits.items()
        if split != "train" and not isinstance(recs, DatasetError)
        for t in eval_texts(recs, datasets[name].task_type)
    )
    index = EvalNgrams(texts, v.leak_ngram) if datasets else None

    rows = scan_corpus(iter_documents(corpus, reader, strict=False), index)
    frame = pd.DataFrame(rows, index=[r["file"] for r in rows])
    res = run_suite(ctx, source, "corpus", frame, corpus_expectations(v))
    at = {"longest_line": "longest_line_at", "nul": "nul_at", "control_rate": "control_at"}
    failures += describe_failures(res, "corpus", frame, at)
    summary["corpus"] = {
        "files": len(rows),
        "bytes": int(frame["bytes"].sum()),
        "duplicate_docs": int(frame["duplicate_of"].notna().sum()),
        "max_control_rate": float(frame["control_rate"].max()),
        "max_line_chars": int(frame["longest_line"].max()),
    }
    del rows, frame
    t1 = time.perf_counter()

    for name, cfg in datasets.items():
        stats, train_keys = {}, (set(), set())
        for split in (only or {}).get(name, ("train", "dev", "test")):
            if (name, split) not in splits:
                continue
            path, records = split_path(cfg, split), splits[name, split]
            if isinstance(records, DatasetError):
                failures.append(f"{name}/{split}: {records}")
                continue
            labels, cols = split_rows(records, cfg.task_type, cfg.labels)
            st = {"rows": len(records), "skipped_rows": getattr(records, "skipped", 0)}
            st["sha256"] = records_sha256(records)  # stages depending on summary.json see edits
            if split == "train":
                train_keys = tuple(set(k) for k in record_keys(records, cfg.task_type))
            else:
                cols["in_train"], cols["in_corpus"], leak = leak_flags(
                    records, cfg.task_type, train_keys, index, v.leak_ngram_share
                )
                st.update(leak)
            if "label" in cols and cfg.task_type != "multiple_choice":
                st["class_balance"] = _balance(cols["label"])
            if "n_choices" in cols:
                st["choice_counts"] = _balance(cols["n_choices"])
            frame = pd.DataFrame(cols, index=labels)
            if frame.index.has_duplicates:
                frame.index = [f"{x} #{i}" for i, x in enumerate(labels, 1)]
            res = run_suite(
                ctx, source, f"{name}.{split}", frame, split_expectations(cfg, v, list(cols))
            )
            failures += describe_failures(res, path, frame)
            stats[split] = st
        summary["datasets"][name] = stats
    t2 = time.perf_counter()
    ctx.build_data_docs(site_names=["genpt"])
    t3 = time.perf_counter()
    summary["timing_s"] = {
        "corpus": round(t1 - t0, 2),
        "datasets": round(t2 - t1, 2),
        "data_docs": round(t3 - t2, 2),
    }
    return summary, failures

"""Labelled datasets -> canonical records, through HF `datasets`.

The canonical schema (task types, fields, types, label rules) is model/schema.py;
a user's own files in that schema need no code.

An adapter, named in params.yaml (`datasets.NAME.adapter`), turns a source format
into these records. A path is a local file, glob or directory, or an s3:// URI
(endpoint from GENPT_S3_ENDPOINT_URL, see genpt/stack/storage.py). Each record may carry
`_where`, a locator used in error messages (default: "row N", 1-based data rows).
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from genpt.errors import GenptError
from genpt.params import DatasetConfig
from model.schema import TEXT_FIELDS, check_record

QUOTE_NONE = 3  # csv.QUOTE_NONE: GLUE TSVs hold unbalanced quotes


class DatasetError(GenptError, ValueError):
    """Bad labelled data; the message names file, row and rule."""


class Records(list):
    """Canonical records; `skipped` counts malformed source rows an adapter dropped."""

    skipped: int = 0


def where(record: dict, i: int) -> str:
    return record.get("_where") or f"row {i}"


# --- reading through HF datasets --------------------------------------------------------


def _files(path: str, pattern: str = "") -> str | list[str]:
    """A local path (file, glob, or directory + pattern) checked to exist, or an s3 URI."""
    if path.startswith("s3://"):
        return path.rstrip("/") + "/" + pattern if pattern else path
    if Path(path).is_dir():
        if not pattern:
            raise DatasetError(f"{path}: is a directory; give a file or glob")
        path = str(Path(path) / pattern)
    files = sorted(glob.glob(path, recursive=True))
    if not files:
        raise DatasetError(f"{path}: file not found")
    for f in files:
        if Path(f).stat().st_size == 0:
            raise DatasetError(f"{f}: empty file")
    return files


def _storage_options(path: str) -> dict:
    if not path.startswith("s3://"):
        return {}
    from genpt.stack.storage import endpoint_url

    ep = endpoint_url()
    return {"client_kwargs": {"endpoint_url": ep}} if ep else {}


@contextmanager
def _s3_allowed(path: str):
    """HF_HUB_OFFLINE=1 makes `datasets` refuse every remote URL; an s3:// path names the
    project's own store, so allow fsspec there (the Hub itself stays offline)."""
    import datasets

    if not path.startswith("s3://"):
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_HUB_OFFLINE, datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False, False
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = saved


def read(builder: str, path: str, pattern: str = "", **kwargs):
    """A `datasets.Dataset` of `path` read by the packaged builder (json, csv, text, parquet)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    files = _files(path, pattern)
    try:
        with _s3_allowed(path):
            return datasets.load_dataset(
                builder,
                data_files=files,
                split="train",
                storage_options=_storage_options(path),
                **kwargs,
            )
    except Exception as e:  # datasets wraps parse errors in several types
        cause = e.__cause__ or e
        if "corresponds to no data" in str(cause):
            raise DatasetError(f"{path}: no data rows (header only?)") from None
        raise DatasetError(f"{path}: cannot be parsed as {builder}: {cause}") from None


def read_tsv(path: str, names: list[str] | None = None, header: bool = True, **kwargs) -> list:
    """Rows of a QUOTE_NONE TSV as dicts of strings (BOM removed)."""
    import datasets

    kw = {"header": None, "names": names} if not header else {}
    if names:
        kw["features"] = datasets.Features({n: datasets.Value("string") for n in names})
    ds = read(
        "csv",
        path,
        sep="\t",
        quoting=QUOTE_NONE,
        keep_default_na=False,
        encoding="utf-8-sig",
        **kw,
        **kwargs,
    )
    return ds.to_list()


def _format(path: str) -> tuple[str, dict]:
    suffix = Path(path.removesuffix(".gz")).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "json", {}
    if suffix == ".csv":
        return "csv", {"keep_default_na": False}
    if suffix == ".tsv":
        return "csv", {"sep": "\t", "keep_default_na": False}
    if suffix == ".parquet":
        return "parquet", {}
    raise DatasetError(f"{path}: unsupported format {suffix!r} (jsonl, json, csv, tsv, parquet)")


# --- adapters ------------------------------------------------------------------------------


def bad_json_line(path: str) -> str | None:
    """'line N: reason' for the first line of a local JSONL file that is not a JSON object."""
    if path.startswith("s3://") or not Path(path).is_file():
        return None
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                return f"line {i}: not valid JSON ({e.msg} at column {e.colno}; truncated?)"
            if not isinstance(obj, dict):
                return f"line {i}: not a JSON object"
    return None


def load_canonical(path: str) -> Records:
    """Records of a canonical-schema file (JSONL, CSV/TSV or parquet)."""
    builder, kwargs = _format(path)
    try:
        ds = read(builder, path, **kwargs)
        if builder == "csv":  # CSV has no types: a class name or a text that looks numeric
            ds = _as_strings(ds, {"label", *(k for f in TEXT_FIELDS.values() for k in f)})
        return Records(ds.to_list())
    except DatasetError:
        bad = bad_json_line(path) if builder == "json" else None
        if bad:
            raise DatasetError(f"{path}: {bad}") from None
        raise


def _as_strings(ds, columns: set[str]):
    """`ds` with these of its columns (those it has) cast to strings."""
    import datasets

    for c in sorted(columns & set(ds.column_names)):
        if ds.features[c] != datasets.Value("string"):
            ds = ds.cast_column(c, datasets.Value("string"))
    return ds


def _need(row: dict, cols: tuple[str, ...], path: str, i: int) -> None:
    missing = [c for c in cols if c not in row]
    if missing:
        raise DatasetError(f"{path}: row {i}: missing column(s) {missing} (found {list(row)})")


def glue_sst2(path: str) -> Records:
    """GLUE SST-2 TSV (header sentence, label)."""
    rows = read_tsv(path)
    out = Records()
    for i, r in enumerate(rows, 1):
        _need(r, ("sentence", "label"), path, i)
        out.append({"text": r["sentence"].strip(), "label": str(r["label"])})
    return out


def glue_cola(path: str) -> Records:
    """CoLA raw TSV, no header: source, label, author's mark, sentence."""
    rows = read_tsv(path, names=["source", "label", "mark", "sentence"], header=False)
    return Records({"text": r["sentence"], "label": r["label"]} for r in rows)


def _pairs(path: str, a: str, b: str, label: str, fa: str, fb: str) -> Records:
    rows = read_tsv(path)
    out = Records()
    for i, r in enumerate(rows, 1):
        _need(r, (a, b, label), path, i)
        out.append({fa: r[a], fb: r[b], "label": str(r[label])})
    return out


def glue_rte(path: str) -> Records:
    """GLUE RTE TSV: index, sentence1, sentence2, label."""
    return _pairs(path, "sentence1", "sentence2", "label", "premise", "hypothesis")


def glue_qnli(path: str) -> Records:
    """GLUE QNLI TSV: index, question, sentence, label (premise = sentence)."""
    return _pairs(path, "sentence", "question", "label", "premise", "hypothesis")


def glue_stsb(path: str) -> Records:
    """GLUE STS-B TSV: sentence1, sentence2, score (0-5) -> similarity regression."""
    rows = read_tsv(path)
    out = Records()
    for i, r in enumerate(rows, 1):
        _need(r, ("sentence1", "sentence2", "score"), path, i)
        try:
            score = float(r["score"])
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: row {i}: score {r['score']!r} is not a number") from None
        out.append({"text_a": r["sentence1"], "text_b": r["sentence2"], "score": score})
    return out


def msrp(path: str) -> Records:
    """Raw MSR paraphrase file (BOM): Quality, #1 ID, #2 ID, #1 String, #2 String."""
    return _pairs(path, "#1 String", "#2 String", "Quality", "text_a", "text_b")


def qqp(path: str) -> Records:
    """QQP TSV without header (id, qid1, qid2, q1, q2, is_duplicate); rows without 6
    fields are skipped and counted."""
    ds = read("text", path)
    out = Records()
    for i, line in enumerate(ds["text"], 1):
        f = line.split("\t")
        if len(f) != 6 or f[5] not in ("0", "1"):
            out.skipped += 1
            continue
        out.append({"text_a": f[3], "text_b": f[4], "label": f[5], "_where": f"line {i}"})
    return out


def snli(path: str) -> Records:
    """SNLI JSONL: sentence1, sentence2, gold_label; '-' (no majority) dropped and counted."""
    ds = read("json", path)
    out = Records()
    for i, r in enumerate(ds.to_list(), 1):
        _need(r, ("sentence1", "sentence2", "gold_label"), path, i)
        if r["gold_label"] == "-":
            out.skipped += 1
            continue
        out.append(
            {
                "premise": r["sentence1"],
                "hypothesis": r["sentence2"],
                "label": r["gold_label"],
                "_where": f"line {i}",
            }
        )
    return out


def sick_entailment(path: str) -> Records:
    """SICK TSV -> entailment (labels entailment/neutral/contradiction)."""
    rows = _pairs(path, "sentence_A", "sentence_B", "entailment_judgment", "premise", "hypothesis")
    for r in rows:
        r["label"] = r["label"].lower()
    return rows


def sick_relatedness(path: str) -> Records:
    """SICK TSV -> similarity regression on relatedness_score (1-5)."""
    rows = read_tsv(path)
    out = Records()
    for i, r in enumerate(rows, 1):
        _need(r, ("sentence_A", "sentence_B", "relatedness_score"), path, i)
        out.append(
            {
                "text_a": r["sentence_A"],
                "text_b": r["sentence_B"],
                "score": float(r["relatedness_score"]),
            }
        )
    return out


def story_cloze(path: str) -> Records:
    """Story Cloze CSV: 4 context sentences, 2 endings, AnswerRightEnding 1|2."""
    out = Records()
    for i, r in enumerate(read("csv", path, keep_default_na=False).to_list(), 1):
        cols = [f"InputSentence{k}" for k in range(1, 5)]
        ends = ["RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2"]
        _need(r, (*cols, *ends, "AnswerRightEnding"), path, i)
        r["AnswerRightEnding"] = str(r["AnswerRightEnding"])
        if r["AnswerRightEnding"] not in ("1", "2"):
            raise DatasetError(
                f"{path}: row {i}: AnswerRightEnding {r['AnswerRightEnding']!r} not in {{1, 2}}"
            )
        out.append(
            {
                "context": " ".join(r[c] for c in cols),
                "question": "",
                "choices": [r[e] for e in ends],
                "label": int(r["AnswerRightEnding"]) - 1,
            }
        )
    return out


def race(path: str) -> Records:
    """RACE directory (or glob) of JSON files, one record per question."""
    ds = read("json", path, pattern="**/*.txt")
    out = Records()
    for r in ds.to_list():
        src = r.get("id", "?")
        qs, opts_, ans_ = r["questions"], r["options"], r["answers"]
        if not len(qs) == len(opts_) == len(ans_):
            raise DatasetError(f"{path}: {src}: questions, options and answers differ in length")
        for k, (q, opts, ans) in enumerate(zip(qs, opts_, ans_, strict=True), 1):
            if ans not in "ABCDE" or len(ans) != 1:
                raise DatasetError(f"{path}: {src} question {k}: answer {ans!r} not a letter")
            out.append(
                {
                    "context": r["article"],
                    "question": q,
                    "choices": opts,
                    "label": "ABCDE".index(ans),
                    "_where": f"{src} question {k}",
                }
            )
    return out


def arc(path: str) -> Records:
    """ARC JSONL: question.stem, question.choices[{text, label}], answerKey (A-E or 1-5)."""
    ds = read("json", path)
    out = Records()
    for i, r in enumerate(ds.to_list(), 1):
        _need(r, ("question", "answerKey"), path, i)
        labels = [c["label"] for c in r["question"]["choices"]]
        if r["answerKey"] not in labels:
            raise DatasetError(
                f"{path}: line {i}: answerKey {r['answerKey']!r} not among choices {labels}"
            )
        out.append(
            {
                "context": "",
                "question": r["question"]["stem"],
                "choices": [c["text"] for c in r["question"]["choices"]],
                "label": labels.index(r["answerKey"]),
                "_where": f"line {i} ({r.get('id')})",
            }
        )
    return out


_OBQA = re.compile(r"^\(A\) (.*?) \(B\) (.*?) \(C\) (.*?) \(D\) (.*)$", re.S)


def openbookqa(path: str) -> Records:
    """OpenBookQA TSV: Question Stem, Choices '(A) .. (B) .. (C) .. (D) ..', Answer Key."""
    rows = read_tsv(path)
    out = Records()
    for i, r in enumerate(rows, 1):
        _need(r, ("Question Stem", "Choices", "Answer Key"), path, i)
        m = _OBQA.match(r["Choices"].strip())
        if not m:
            raise DatasetError(f"{path}: row {i}: Choices not of the form '(A) .. (D) ..'")
        if r["Answer Key"] not in ("A", "B", "C", "D"):
            raise DatasetError(f"{path}: row {i}: Answer Key {r['Answer Key']!r} not in A-D")
        out.append(
            {
                "context": "",
                "question": r["Question Stem"],
                "choices": list(m.groups()),
                "label": "ABCD".index(r["Answer Key"]),
            }
        )
    return out


ADAPTERS: dict[str, Callable[[str], Records]] = {
    "canonical": load_canonical,
    "glue_sst2": glue_sst2,
    "glue_cola": glue_cola,
    "glue_rte": glue_rte,
    "glue_qnli": glue_qnli,
    "glue_stsb": glue_stsb,
    "msrp": msrp,
    "qqp": qqp,
    "snli": snli,
    "sick_entailment": sick_entailment,
    "sick_relatedness": sick_relatedness,
    "story_cloze": story_cloze,
    "race": race,
    "arc": arc,
    "openbookqa": openbookqa,
}


# --- checks --------------------------------------------------------------------------------


def check_records(records: list[dict], cfg: DatasetConfig, path: str) -> None:
    """Every record follows the schema (model/schema.py): required fields present and
    non-empty, of the right types, labels in the declared set, choices consistent."""
    if not records:
        raise DatasetError(f"{path}: no rows")
    for i, r in enumerate(records, start=1):
        if bad := check_record(r, cfg.task_type, cfg.labels):
            raise DatasetError(f"{path}: {where(r, i)}: {bad}")


def split_path(cfg: DatasetConfig, split: str) -> str | None:
    """The file a split is read from: with `holdout`, dev comes from the train file."""
    return cfg.train if split == "dev" and cfg.holdout else getattr(cfg, split)


def read_split(cfg: DatasetConfig, split: str) -> Records:
    """Canonical records of the dataset's `split` ('train', 'dev' or 'test'), unchecked.

    With `holdout: N`, N random rows of the train file (seed 0) are dev, the rest train,
    as the original GPT code split Story Cloze's validation set."""
    if cfg.adapter not in ADAPTERS:
        raise DatasetError(f"unknown adapter {cfg.adapter!r}; known: {sorted(ADAPTERS)}")
    rows = ADAPTERS[cfg.adapter](split_path(cfg, split))
    if not cfg.holdout or split == "test":
        return rows
    if cfg.holdout >= len(rows):
        raise DatasetError(f"{cfg.train}: holdout {cfg.holdout} needs more than {len(rows)} rows")
    dev = set(np.random.default_rng(0).permutation(len(rows))[: cfg.holdout].tolist())
    out = Records(r for i, r in enumerate(rows) if (i in dev) == (split == "dev"))
    out.skipped = rows.skipped
    return out


def subsample(rows: list, n: int | None, seed: int) -> list:
    """At most n rows, a fixed random choice kept in file order (a label budget)."""
    if n is None or n >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:n])
    return [rows[i] for i in keep]


def load_split(cfg: DatasetConfig, split: str) -> Records:
    """Canonical, checked records of the dataset's `split` ('train' or 'dev')."""
    records = read_split(cfg, split)
    check_records(records, cfg, split_path(cfg, split))
    return records


def dump_jsonl(records: list[dict], path: str | Path) -> None:
    """Write records as canonical JSONL (without `_where`)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            r = {k: v for k, v in r.items() if k != "_where"}
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

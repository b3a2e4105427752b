"""The pre-training corpus: its sources (paths.corpus), read one document at a time.

A source is a local glob or an s3:// URL (fsspec/s3fs, genpt/stack/storage.py) of
  text      .txt (any other name too), .txt.gz, .txt.zst: a file is one document;
  jsonl     .jsonl / .ndjson (also .gz, .zst): a line is one document, its `text_field`;
  parquet   .parquet: a row is one document, its `text_field` column (read in batches);
  datasets  a local `datasets.save_to_disk` directory, or, with `corpus.builder`, a
            `datasets` builder (json, parquet, text, ...) whose data_files are the sources;
            both read as an IterableDataset (streaming=True), a row per document.
`corpus.format` declares the format (auto: by name). A file that does not match it fails
with CorpusError naming the file and line or row: JSON syntax never becomes text.

Text is decoded the same way for the tokenize stage (strict: fails on bad input) and for
validation (reports it): UTF-8 with a BOM removed, CRLF/CR turned into LF.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from genpt.errors import GenptError

COMPRESSION = {".gz": "gzip", ".zst": "zstd"}
JSONL = (".jsonl", ".ndjson", ".json")
BATCH_ROWS = 1024  # parquet rows per read


class CorpusError(GenptError, ValueError):
    """Unreadable, empty or mis-declared pre-training text; the message names the file."""


@dataclass(frozen=True)
class Document:
    source: str  # the file, URL or directory
    text: str
    at: str | None = None  # 'line N' / 'row N' within the source; None: the whole file
    error: str | None = None  # not valid UTF-8 (non-strict reads only): where and why
    nbytes: int = 0  # bytes read for it (decompressed)

    @property
    def name(self) -> str:
        return f"{self.source}: {self.at}" if self.at else self.source


def _is_url(p: str) -> bool:
    return "://" in p


def _filesystem(url: str):
    """The fsspec filesystem of a URL; s3:// gets the project's S3 settings."""
    import fsspec

    if url.startswith("s3://"):
        from genpt.stack.storage import load_env_file, s3_filesystem

        load_env_file()  # `genpt stack up`'s .genpt/s3.env, as publish reads it
        return s3_filesystem()
    return fsspec.filesystem(url.split("://")[0])


def corpus_files(patterns: list[str]) -> list[str]:
    """The sources the globs (local or s3://) match, sorted; CorpusError if none."""
    found = set()
    for p in patterns:
        if _is_url(p):
            fs = _filesystem(p)
            proto = p.split("://")[0]
            found |= {f"{proto}://{f}" for f in fs.glob(p) if not fs.isdir(f)}
        else:
            found |= {str(Path(f)) for f in glob.glob(p, recursive=True)}
    if not found:
        raise CorpusError(f"paths.corpus {patterns}: no files match")
    return sorted(found)


def decode(data: bytes) -> tuple[str, str | None]:
    """Text (BOM removed, CRLF/CR -> LF) and, if the bytes are not valid UTF-8, where
    ('line N, byte B: reason'; the text then has replacement characters)."""
    err = None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        err = f"line {line}, byte {e.start}: not valid UTF-8 ({e.reason})"
        text = data.decode("utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n"), err


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def format_of(source: str, declared: str = "auto") -> str:
    """The format a source is read as: the declared one, or (auto) the one its name says.
    A JSON-lines or Parquet file declared as text (or the reverse) is refused."""
    if not _is_url(source) and Path(source).is_dir():
        named = "datasets"
    else:
        stem = PurePosixPath(source).name
        for ext in COMPRESSION:
            stem = stem.removesuffix(ext)
        suffix = PurePosixPath(stem).suffix.lower()
        named = "jsonl" if suffix in JSONL else "parquet" if suffix == ".parquet" else "text"
    if declared not in ("auto", named):
        raise CorpusError(
            f"{source}: a {named} source, but corpus.format is {declared} "
            f"(set corpus.format: {named} or auto)"
        )
    return named


def _open(source: str):
    """A binary stream of the file's bytes, decompressed by its suffix (.gz, .zst)."""
    import pyarrow as pa

    codec = COMPRESSION.get(PurePosixPath(source).suffix)
    raw = _filesystem(source if _is_url(source) else "file://").open(source, "rb")
    return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec) if codec else raw


def _read_bytes(source: str) -> bytes:
    try:
        with _open(source) as f:
            return f.read()
    except (OSError, EOFError) as e:  # truncated or corrupt .gz/.zst, unreadable file
        raise CorpusError(f"{source}: cannot read: {e}") from None


def _check(doc: Document, strict: bool) -> Document:
    """Strict: CorpusError (file and line) if not valid UTF-8, empty or holding a NUL."""
    if strict:
        if doc.error:
            raise CorpusError(f"{doc.name}: {doc.error}")
        if not doc.text.strip():
            raise CorpusError(f"{doc.name}: empty document")
        if "\x00" in doc.text:
            line = line_of(doc.text, doc.text.index("\x00"))
            raise CorpusError(f"{doc.name}: line {line}: NUL character (binary data?)")
    return doc


def _text_doc(source: str) -> Document:
    data = _read_bytes(source)
    text, err = decode(data)
    start = len(text) - len(text.lstrip())  # the first non-blank line: a JSON object?
    end = text.find("\n", start)
    first = text[start : end if end >= 0 else len(text)]
    if first.startswith("{"):  # JSON syntax must never become training text
        try:
            is_json = isinstance(json.loads(first), dict)
        except ValueError:
            is_json = False
        if is_json:
            raise CorpusError(
                f"{source}: line {line_of(text, start)} is a JSON object, not text (JSON "
                "lines: name the file .jsonl, or set corpus.format: jsonl)"
            )
    return Document(source, text, error=err, nbytes=len(data))


def _field_text(value, where: str, field: str) -> str:
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise CorpusError(f"{where}: text field {field!r} is {got}, not a string")
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _jsonl_docs(source: str, field: str) -> Iterator[Document]:
    import io

    from genpt.io import json_lines

    try:
        with _open(source) as f:
            for n, row in json_lines(io.TextIOWrapper(f, encoding="utf-8-sig")):
                text = _field_text(row.get(field), f"{source}: line {n}", field)
                yield Document(source, text, f"line {n}", nbytes=len(text.encode()))
    except CorpusError:
        raise
    except UnicodeDecodeError as e:
        raise CorpusError(f"{source}: not valid UTF-8 ({e.reason})") from None
    except (OSError, EOFError) as e:
        raise CorpusError(f"{source}: cannot read: {e}") from None
    except ValueError as e:  # json_lines: 'line N: not JSON (...)'
        raise CorpusError(f"{source}: {e}") from None


def _rows(source: str, rows, field: str) -> Iterator[Document]:
    for n, value in enumerate(rows, 1):
        text = _field_text(value, f"{source}: row {n}", field)
        yield Document(source, text, f"row {n}", nbytes=len(text.encode()))


def _parquet_docs(source: str, field: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(_open(source))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise CorpusError(f"{source}: not a readable Parquet file: {e}") from None
    names = pf.schema_arrow.names
    if field not in names:
        raise CorpusError(
            f"{source}: no text field {field!r} (columns: {', '.join(names)}); "
            "set corpus.text_field"
        )
    batches = pf.iter_batches(batch_size=BATCH_ROWS, columns=[field])
    yield from _rows(source, (v for b in batches for v in b.column(0).to_pylist()), field)


def _datasets_docs(sources: list[str], cfg) -> Iterator[Document]:
    """A save_to_disk directory or a builder over the sources, streamed row by row."""
    import datasets

    datasets.disable_progress_bars()
    if cfg.builder:
        name = f"datasets builder {cfg.builder!r}"
        ds = datasets.load_dataset(cfg.builder, data_files=sources, split=cfg.split, streaming=True)
    else:
        (name,) = sources
        try:
            ds = datasets.load_from_disk(name)
        except (FileNotFoundError, ValueError) as e:
            raise CorpusError(f"{name}: not a `datasets` directory: {e}") from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[cfg.split]
        ds = ds.to_iterable_dataset()  # memory-mapped Arrow, streamed like streaming=True
    if ds.column_names is not None and cfg.text_field not in ds.column_names:
        raise CorpusError(
            f"{name}: no text field {cfg.text_field!r} "
            f"(columns: {', '.join(ds.column_names)}); set corpus.text_field"
        )
    yield from _rows(name, (r.get(cfg.text_field) for r in ds), cfg.text_field)


def iter_documents(patterns: list[str], cfg=None, strict: bool = True) -> Iterator[Document]:
    """Every document of the corpus, one at a time, in source order.

    cfg: params' `corpus` section (format, text_field, builder, split). strict (the tokenize
    stage): a document that is not valid UTF-8, empty or holds a NUL raises CorpusError;
    otherwise (validation) it is yielded with its problem and the validator reports it.
    Format errors (bad JSON, a truncated .gz, a missing field) always raise."""
    from genpt.params import CorpusConfig

    cfg = cfg or CorpusConfig()
    sources = corpus_files(patterns)
    if os.environ.get("DVC_STAGE") and (out := outside_root(sources, cfg.root)):
        raise CorpusError(
            f"{out[0]} is outside corpus.root ({cfg.root}), the folder dvc.yaml's stages "
            "depend on: dvc would not see it change; set corpus.root to a folder holding it"
        )
    if cfg.builder:
        yield from (_check(d, strict) for d in _datasets_docs(sources, cfg))
        return
    kinds = [(s, format_of(s, cfg.format)) for s in sources]  # refuse before reading any
    for s, kind in kinds:
        if kind == "text":
            docs = iter([_text_doc(s)])
        elif kind == "jsonl":
            docs = _jsonl_docs(s, cfg.text_field)
        elif kind == "parquet":
            docs = _parquet_docs(s, cfg.text_field)
        else:
            docs = _datasets_docs([s], cfg)
        yield from (_check(d, strict) for d in docs)


def read_document(path: Path | str) -> str:
    """A text file decoded; CorpusError (file and line) if it is not valid UTF-8, empty or
    holds a NUL."""
    return _check(_text_doc(str(path)), strict=True).text


def first_document(patterns: list[str], cfg=None) -> str:
    """The text of the corpus's first document."""
    return next(iter_documents(patterns, cfg)).text


def outside_root(sources: list[str], root: str) -> list[str]:
    """Local sources not under `root` (corpus.root, the stages' DVC dep)."""
    base = os.path.abspath(root)
    return [
        s
        for s in sources
        if not _is_url(s) and os.path.commonpath([base, os.path.abspath(s)]) != base
    ]


def sha256(source: str) -> str:
    """sha256 of a source's bytes as stored (a directory: of its files in order)."""
    fs = _filesystem(source) if _is_url(source) else _filesystem("file://")
    files = sorted(fs.find(source)) if fs.isdir(source) else [source]
    h = hashlib.sha256()
    for f in files:
        with fs.open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()

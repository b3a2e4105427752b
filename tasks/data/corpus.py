"""The pre-training corpus: its files (paths.corpus globs) and how a file is decoded.

Decoding is the same for the tokenize stage (which fails on bad input) and for
validation (which reports it): UTF-8 with a BOM removed, CRLF/CR turned into LF.
"""

from __future__ import annotations

import glob
from pathlib import Path

from tasks.errors import GenptError


class CorpusError(GenptError, ValueError):
    """Unreadable or empty pre-training text; the message names the file."""


def corpus_files(patterns: list[str]) -> list[Path]:
    """The files the globs match, sorted; CorpusError if none."""
    files = sorted({Path(f) for p in patterns for f in glob.glob(p, recursive=True)})
    if not files:
        raise CorpusError(f"paths.corpus {patterns}: no files match")
    return files


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


def read_document(path: Path) -> str:
    """A corpus file decoded; CorpusError (file and line) if it is not valid UTF-8, empty
    or holds a NUL."""
    text, err = decode(path.read_bytes())
    if err:
        raise CorpusError(f"{path}: {err}") from None
    if not text.strip():
        raise CorpusError(f"{path}: empty document")
    if "\x00" in text:
        raise CorpusError(
            f"{path}: line {line_of(text, text.index(chr(0)))}: NUL character (binary data?)"
        )
    return text


def first_corpus_file(patterns: list[str]) -> Path:
    """The first file of the corpus, in corpus_files' order."""
    return corpus_files(patterns)[0]

"""The corpus scanned in bounded memory: per-document facts, exact duplicates and eval
n-grams found, one document at a time, across worker processes.

Memory does not grow with the corpus's bytes: the main process reads documents
(genpt/ingest/corpus.py `iter_documents`) and hands them out in batches of about
BATCH_BYTES, with at most 2 batches per worker in flight. What it keeps grows with the
number of documents only: one row of facts (about 0.5 KB) and one 16-byte digest each.
The largest document is held whole (up to validate.max_doc_chars).
Workers are spawned (not forked: the caller may run threads), so a script that calls
this needs multiprocessing's usual `if __name__ == "__main__":` guard; `genpt` has it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator

from genpt.ingest.corpus import Document, line_of
from genpt.ingest.leakage import EvalNgrams

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # not \t \n \r
BATCH_BYTES = 4 << 20  # text per task sent to a worker
INLINE_BYTES = 16 << 20  # a corpus smaller than this is scanned without workers
MAX_WORKERS = 8  # ~22 MB/s each: more would wait on the one reader (~100 MB/s)

_index: EvalNgrams | None = None  # the worker's copy of the eval n-grams


def _init(index: EvalNgrams | None) -> None:
    global _index
    _index = index


def facts(text: str) -> dict:
    """The facts of one document's text (no file names: the caller adds them)."""
    lines = text.split("\n")
    lens = list(map(len, lines))
    longest = lens.index(max(lens))
    nul, ctrl = text.find("\x00"), CONTROL.search(text)
    return {
        "chars": len(text.strip()),
        "longest_line": lens[longest],
        "longest_line_at": f"line {longest + 1}",
        "nul": text.count("\x00"),
        "nul_at": f"line {line_of(text, nul)}" if nul >= 0 else None,
        "control_rate": len(CONTROL.findall(text)) / max(len(text), 1),
        "control_at": f"line {line_of(text, ctrl.start())}" if ctrl else None,
    }


def digest(text: str) -> bytes:
    """The duplicate key: 16 bytes of BLAKE2b of the text with whitespace collapsed."""
    return hashlib.blake2b(" ".join(text.split()).encode(), digest_size=16).digest()


def _scan(texts: list[str]) -> tuple[list[tuple[dict, bytes]], set[int]]:
    """A batch of documents: per document its facts and digest; the eval n-grams found."""
    found: set[int] = set()
    out = []
    for t in texts:
        out.append((facts(t), digest(t)))
        if _index is not None:
            found.update(_index.scan(t).tolist())
    return out, found


def _batches(docs: Iterable[Document]) -> Iterator[list[Document]]:
    batch, size = [], 0
    for d in docs:
        batch.append(d)
        size += len(d.text)
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _results(docs: Iterable[Document], index: EvalNgrams | None, workers: int):
    """(batch, its _scan result) in corpus order; workers start once INLINE_BYTES are read."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _init(index)
    pool, pending, done = None, deque(), 0
    try:
        for batch in _batches(docs):
            if pool is None and workers > 1 and done >= INLINE_BYTES:
                ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
                pool = ProcessPoolExecutor(workers, ctx, initializer=_init, initargs=(index,))
            done += sum(len(d.text) for d in batch)
            if pool is None:
                yield batch, _scan([d.text for d in batch])
                continue
            pending.append((batch, pool.submit(_scan, [d.text for d in batch])))
            if len(pending) >= 2 * workers:
                b, f = pending.popleft()
                yield b, f.result()
        for b, f in pending:
            yield b, f.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def scan_corpus(docs: Iterable[Document], index: EvalNgrams | None = None) -> list[dict]:
    """One row of facts per document, in corpus order; marks the eval n-grams found in
    `index`. A document whose digest an earlier one has is a duplicate of it."""
    rows, seen = [], {}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cpus or 1, MAX_WORKERS)
    for batch, (out, found) in _results(docs, index, workers):
        if index is not None:
            index.mark(list(found))
        for doc, (f, key) in zip(batch, out, strict=True):
            first = seen.setdefault(key, doc.name)
            rows.append(
                {
                    "file": doc.name,
                    "bytes": doc.nbytes,
                    "utf8_error": doc.error,
                    **f,
                    "duplicate_of": None if first == doc.name else first,
                }
            )
    return rows

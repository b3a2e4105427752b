"""Tokenization library: the val split, the BPE sample, streamed encoding into shards.

The tokenize stage (tasks/tokenize.py) reads the corpus twice, one document at a time:
  1. `sample`: a seeded random sample of the training text, at most tokenizer.sample_bytes,
     which BPE trains on (so its time and memory are bounded by the sample);
  2. `encode_corpus`: every document cut into pieces (`chunks`), encoded in a process pool
     and appended, in corpus order, to fixed-size shards `{split}-NNNNN.bin` of
     tokenizer.shard_tokens ids each (the last shorter), with a document index
     `{split}.idx` (int64: where each document starts in the split's stream). Pre-training
     memory-maps the shards back (load_shards).
Memory holds the sample, one document and a few batches of pieces, never the corpus.

Pieces are at most ENCODE_CHUNK_CHARS, cut where the pre-tokenizer splits anyway, so their
ids equal whole-document encoding. Workers encode with tiktoken, built from the trained BPE
(model.tokenizer.fast_encoder); a sample of the pieces (the first VERIFY_FIRST and every
VERIFY_EVERY-th) is also encoded by the HF tokenizer, and any difference is an error naming
the document and line.
"""

from __future__ import annotations

import hashlib
import heapq
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from genpt import artifacts
from genpt.bundle.manifest import sha256_file
from genpt.errors import GenptError

ENCODE_CHUNK_CHARS = 65_536
TASK_CHARS = 1 << 22  # characters per batch sent to a worker
# The HF tokenizer runs ~15x slower than tiktoken: it checks the first VERIFY_FIRST pieces
# (all of a small corpus) and every VERIFY_EVERY-th after them (0.4%: +6% CPU)
VERIFY_FIRST, VERIFY_EVERY = 32, 256
SPLITS = ("train", "val")


class TokenizeError(GenptError):
    """tiktoken and the HF tokenizer disagree on a piece of the corpus."""


def draw(*key) -> float:
    """A uniform number in [0, 1), a pure function of `key`: a seeded choice that does not
    depend on what was drawn before."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_document(text: str, val_fraction: float, seed: int, index: int) -> tuple[str, str]:
    """Document `index`'s (train, val) text, split at a line boundary: the last val_fraction
    of its lines. A document too short for that goes to val whole with probability
    val_fraction (seeded by seed and index)."""
    lines = text.splitlines(keepends=True)
    n_val = int(len(lines) * val_fraction)
    if n_val == 0:
        return ("", text) if draw(seed, "val", index) < val_fraction else (text, "")
    return "".join(lines[: len(lines) - n_val]), "".join(lines[len(lines) - n_val :])


def _cut(text: str, i: int, j: int) -> int | None:
    """The last k in (i, j) with whitespace at k after a non-space at k - 1, preferring a
    newline. The pre-tokenizer always starts a piece there, so cutting changes no ids."""
    for ch in ("\n", " "):
        k = text.rfind(ch, i + 1, j)
        while k > i:
            if not text[k - 1].isspace():
                return k
            k = text.rfind(ch, i + 1, k)
    return None


def chunks(text: str, size: int = ENCODE_CHUNK_CHARS) -> list[str]:
    """Pieces of at most `size` chars that join back to `text`, cut where the pre-tokenizer
    splits anyway (see _cut), else (no whitespace at all) anywhere."""
    out, i, n = [], 0, len(text)
    while i < n:
        j = min(i + size, n)
        if j < n:
            j = _cut(text, i, j) or j
        out.append(text[i:j])
        i = j
    return out


def _nbytes(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode())


def sample(docs: Iterable[str], val_fraction: float, seed: int, budget: int) -> list[str]:
    """A seeded random sample of the training text, at most `budget` UTF-8 bytes, in
    corpus order: the pieces (chunks) with the lowest draw(seed, document, piece). All of
    it when the corpus is smaller."""
    heap: list = []  # (-draw, document, piece, text, bytes): the largest draw on top
    size = 0
    for k, text in enumerate(docs):
        train, _ = split_document(text, val_fraction, seed, k)
        for j, piece in enumerate(chunks(train)):
            n = _nbytes(piece)
            heapq.heappush(heap, (-draw(seed, "sample", k, j), k, j, piece, n))
            size += n
            while size > budget:
                size -= heapq.heappop(heap)[4]
    return [e[3] for e in sorted(heap, key=lambda e: (e[1], e[2]))]


class ShardWriter:
    """Appends a split's ids to shards `{split}-00000.bin`, ... of `shard_tokens` ids each
    (the last shorter; the first always exists), hashing as it writes, and each document's
    start to the document index `{split}.idx`."""

    def __init__(self, d: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.d, self.split, self.dtype, self.shard_tokens = d, split, dtype, shard_tokens
        self.shards: list[dict] = []
        self.tokens = self.documents = 0
        self.index = open(d / f"{split}.idx", "wb")  # noqa: SIM115 - closed by close()
        self._open()

    def _open(self) -> None:
        self._close_shard()
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self.file = open(self.d / name, "wb")  # noqa: SIM115 - closed by _close_shard()
        self.hash, self.room = hashlib.sha256(), self.shard_tokens
        self.shards.append({"file": name, "tokens": 0})

    def _close_shard(self) -> None:
        if self.shards:
            self.file.close()
            self.shards[-1]["sha256"] = self.hash.hexdigest()

    def start_document(self) -> None:
        self.index.write(np.int64(self.tokens).tobytes())
        self.documents += 1

    def write(self, ids: np.ndarray) -> None:
        while ids.size:
            if not self.room:
                self._open()
            n = min(self.room, ids.size)
            data = ids[:n].astype(self.dtype, copy=False).tobytes()
            self.file.write(data)
            self.hash.update(data)
            self.room -= n
            self.shards[-1]["tokens"] += n
            self.tokens += n
            ids = ids[n:]

    def close(self) -> dict:
        """The manifest's entry: shards (file, tokens, sha256) and the document index."""
        self._close_shard()
        self.index.close()
        idx = self.d / f"{self.split}.idx"
        index = {"file": idx.name, "documents": self.documents, "sha256": sha256_file(idx)}
        return {"shards": self.shards, "index": index}


# --- the encoding workers (spawned: they start from the tokenizer's JSON alone) ----------

_worker: dict = {}


def _start_worker(tokenizer_json: str) -> None:
    from tokenizers import Tokenizer

    from model.tokenizer import fast_encoder, wrap

    tok = wrap(Tokenizer.from_str(tokenizer_json))
    _worker.update(hf=tok.backend_tokenizer, fast=fast_encoder(tok))


def encode_pieces(
    pieces: list[str], check: list[int], dtype: str
) -> tuple[list[np.ndarray], int | None]:
    """Ids of each piece (tiktoken, or the HF tokenizer when there is no fast encoder), and
    the first piece of `check` on which tiktoken and the HF tokenizer differ (or None)."""
    fast, hf = _worker["fast"], _worker["hf"]
    if fast is None:
        encoded = hf.encode_batch_fast(pieces, add_special_tokens=False)
        return [np.asarray(e.ids, dtype) for e in encoded], None
    ids = [fast.encode_to_numpy(p, allowed_special="all").astype(dtype) for p in pieces]
    for i in check:
        if hf.encode(pieces[i], add_special_tokens=False).ids != ids[i].tolist():
            return ids, i
    return ids, None


def verify(piece: int) -> bool:
    """Whether the HF tokenizer checks the corpus's piece number `piece`."""
    return piece < VERIFY_FIRST or piece % VERIFY_EVERY == 0


def _tasks(docs: Iterable, val_fraction: float, seed: int) -> Iterator[tuple[list, list]]:
    """Batches of about TASK_CHARS: (pieces, tags). A tag is (split, first piece of the
    document's part, last piece, document name, line the piece starts at)."""
    pieces, tags, chars = [], [], 0
    for k, doc in enumerate(docs):
        line, parts = 1, split_document(doc.text, val_fraction, seed, k)
        for split, part in zip(SPLITS, parts, strict=True):
            ps = chunks(part)
            for j, p in enumerate(ps):
                pieces.append(p)
                tags.append((split, j == 0, j == len(ps) - 1, doc.name, line))
                line += p.count("\n")
                chars += len(p)
                if chars >= TASK_CHARS:
                    yield pieces, tags
                    pieces, tags, chars = [], [], 0
    if pieces:
        yield pieces, tags


def encode_corpus(
    docs: Iterable, tokenizer, d: Path, *, dtype: np.dtype, eot: int, val_fraction: float,
    seed: int, shard_tokens: int, workers: int | None = None,
) -> dict:  # fmt: skip
    """Encode `docs` (corpus Documents) into shards under `d`, each document's part ended by
    `eot`; the manifest's train/val entries and how they were encoded. TokenizeError, naming
    the document and line, if tiktoken and the HF tokenizer differ on a checked piece."""
    from model.tokenizer import fast_encoder

    writers = {s: ShardWriter(d, s, dtype, shard_tokens) for s in SPLITS}
    sep = np.array([eot], dtype)
    workers = workers or len(os.sched_getaffinity(0))
    n_pieces = n_checked = 0

    def write(future, tags) -> None:
        ids, bad = future.result()
        if bad is not None:
            _, _, _, name, line = tags[bad]
            raise TokenizeError(
                f"{name}: line {line}: tiktoken and the HF tokenizer encode this text "
                "differently; report it (the text, model/tokenizer.py: fast_encoder)"
            )
        for (split, first, last, _, _), a in zip(tags, ids, strict=True):
            w = writers[split]
            if first:
                w.start_document()
            w.write(a)
            if last:
                w.write(sep)

    spawn = multiprocessing.get_context("spawn")  # workers hold only the tokenizer
    json_ = tokenizer.backend_tokenizer.to_str()
    with ProcessPoolExecutor(workers, spawn, initializer=_start_worker, initargs=(json_,)) as pool:
        pending: deque = deque()
        try:
            for pieces, tags in _tasks(docs, val_fraction, seed):
                check = [i for i in range(len(pieces)) if verify(n_pieces + i)]
                n_pieces, n_checked = n_pieces + len(pieces), n_checked + len(check)
                pending.append((pool.submit(encode_pieces, pieces, check, dtype.name), tags))
                while len(pending) > 2 * workers:
                    write(*pending.popleft())
            while pending:
                write(*pending.popleft())
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        finally:
            entries = {s: w.close() for s, w in writers.items()}
    fast = fast_encoder(tokenizer) is not None
    encoder = {"encoder": "tiktoken" if fast else "tokenizers", "pieces": n_pieces}
    return {**entries, "encoder": encoder | ({"pieces_verified": n_checked} if fast else {})}


def load_shards(params, split: str):
    """The TokenShards of `split` ('train' or 'val') that the tokenize stage wrote under
    artifacts.tokens(params)."""
    from genpt.artifacts_check import token_shards
    from model.shards import TokenShards

    d = artifacts.tokens(params)
    m = token_shards(d, [split], sha=False)  # sizes: sha256 is the stage's, once
    return TokenShards([d / s["file"] for s in m[split]], m["dtype"])

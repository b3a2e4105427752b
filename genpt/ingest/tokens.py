"""Tokenization library: corpus splits, chunked parallel encoding, token shards.

The tokenize stage (tasks/tokenize.py) uses it; pre-training reads the shards back
with load_shards.

Encoding cuts each document into pieces of at most ENCODE_CHUNK_CHARS, where the
pre-tokenizer splits anyway (so the ids equal whole-document encoding), and encodes
them on all cores with tiktoken, built from the trained BPE
(model.tokenizer.fast_encoder). Every VERIFY_EVERY-th piece is also encoded by the HF
tokenizer; on any difference the whole corpus is encoded by the HF tokenizer instead.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402

from genpt import artifacts
from genpt.bundle.manifest import sha256_file

ENCODE_CHUNK_CHARS = 65_536
VERIFY_EVERY = 32
log = logging.getLogger(__name__)


def split_document(text: str, val_fraction: float) -> tuple[str, str]:
    """Deterministic split at a line boundary: the last val_fraction goes to validation."""
    lines = text.splitlines(keepends=True)
    n_val = int(len(lines) * val_fraction)
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


def encode_docs(
    tokenizer, docs: list[str], dtype: np.dtype, threads: int | None = None
) -> tuple[list[np.ndarray], dict]:
    """Token ids of each document, and how they were encoded (encoder, pieces checked)."""
    from model.tokenizer import fast_encoder

    pieces = [chunks(d) for d in docs]
    flat = [p for ps in pieces for p in ps]
    hf = tokenizer.backend_tokenizer
    fast = fast_encoder(tokenizer)
    info: dict = {"encoder": "tokenizers", "pieces": len(flat)}
    arrays = None
    if fast is not None:
        with ThreadPoolExecutor(threads or len(os.sched_getaffinity(0))) as pool:
            arrays = list(pool.map(lambda t: fast.encode_to_numpy(t, allowed_special="all"), flat))
        sample = list(range(0, len(flat), VERIFY_EVERY))
        ref = hf.encode_batch_fast([flat[i] for i in sample], add_special_tokens=False)
        bad = [i for i, r in zip(sample, ref, strict=True) if r.ids != arrays[i].tolist()]
        if bad:
            log.warning("tiktoken and the HF tokenizer differ on piece %d: using HF", bad[0])
            info["tiktoken_mismatch"], arrays = bad[0], None
        else:
            info = {"encoder": "tiktoken", "pieces": len(flat), "pieces_verified": len(sample)}
    if arrays is None:
        arrays = [e.ids for e in hf.encode_batch_fast(flat, add_special_tokens=False)]
    arrays = [np.asarray(a, dtype=dtype) for a in arrays]
    out, i = [], 0
    for ps in pieces:
        out.append(np.concatenate(arrays[i : i + len(ps)]) if ps else np.zeros(0, dtype))
        i += len(ps)
    return out, info


def write_shard(path: Path, docs: list[np.ndarray], eot: int, dtype: np.dtype) -> dict:
    """Documents joined by the end-of-text token, as raw `dtype` ids."""
    sep = np.array([eot], dtype)
    ids = np.concatenate([x for d in docs for x in (d, sep)]) if docs else np.zeros(0, dtype)
    ids.tofile(path)
    return {
        "file": path.name,
        "documents": len(docs),
        "tokens": int(ids.size),
        "sha256": sha256_file(path),
    }


def load_shards(params, split: str):
    """The TokenShards of `split` ('train' or 'val') that the tokenize stage wrote under
    artifacts.tokens(params)."""
    from genpt.artifacts_check import token_shards
    from model.shards import TokenShards

    d = artifacts.tokens(params)
    m = token_shards(d, [split], sha=False)  # sizes: sha256 is the stage's, once
    return TokenShards([d / s["file"] for s in m[split]], m["dtype"])

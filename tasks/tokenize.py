"""Stage `tokenize`: train the BPE tokenizer and write memory-mapped token shards.

Outputs (under paths.artifacts): tokenizer/ (tokenizer.json + transformers files),
tokens/{train,val}.bin and tokens/manifest.json (token counts, dtype, vocab size,
sha256 of every shard, source file and the tokenizer).

Encoding cuts each document into pieces of at most ENCODE_CHUNK_CHARS, where the
pre-tokenizer splits anyway (so the ids equal whole-document encoding), and encodes
them on all cores with tiktoken, built from the trained BPE
(model.tokenizer.fast_encoder). Every VERIFY_EVERY-th piece is also encoded by the HF
tokenizer; on any difference the whole corpus is encoded by the HF tokenizer instead.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402

from tasks.bundle.manifest import sha256_file
from tasks.errors import GenptError
from tasks.io import atomic_dir, write_json
from tasks.params import Params

ENCODE_CHUNK_CHARS = 65_536
VERIFY_EVERY = 32
log = logging.getLogger(__name__)


class CorpusError(GenptError, ValueError):
    """Unreadable or empty pre-training text; the message names the file."""


def corpus_files(patterns: list[str]) -> list[Path]:
    files = sorted({Path(f) for p in patterns for f in glob.glob(p, recursive=True)})
    if not files:
        raise CorpusError(f"paths.corpus {patterns}: no files match")
    return files


def read_document(path: Path) -> str:
    """UTF-8 text with a BOM removed and CRLF/CR turned into LF."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CorpusError(f"{path}: line {line}, byte {e.start}: not valid UTF-8") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CorpusError(f"{path}: empty document")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise CorpusError(f"{path}: line {line}: NUL character (binary data?)")
    return text


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


def run(params: Params) -> dict:
    from model.data import token_dtype
    from model.tokenizer import EOT, save_tokenizer, train_tokenizer

    files = corpus_files(params.paths.corpus)
    docs = [read_document(f) for f in files]  # fail on bad input before any work
    pairs = [split_document(d, params.paths.val_fraction) for d in docs]
    n_bytes = sum(len(d.encode()) for d in docs)

    t0 = time.perf_counter()
    tok = train_tokenizer(
        (p[0] for p in pairs), params.tokenizer.vocab_size, params.tokenizer.min_frequency
    )
    t_train = time.perf_counter() - t0
    eot, dtype = tok.convert_tokens_to_ids(EOT), token_dtype(len(tok))

    t0 = time.perf_counter()
    parts = [p[0] for p in pairs] + [p[1] for p in pairs if p[1]]
    ids, encoder = encode_docs(tok, parts, dtype)
    train_ids, val_ids = ids[: len(pairs)], ids[len(pairs) :]
    t_enc = time.perf_counter() - t0

    with atomic_dir(params.artifacts("tokenizer")) as d:
        save_tokenizer(tok, d)
        tok_sha = sha256_file(d / "tokenizer.json")
    with atomic_dir(params.artifacts("tokens")) as d:
        manifest = {
            "vocab_size": len(tok),
            "dtype": dtype.name,
            "eot": eot,
            "tokenizer_sha256": tok_sha,
            "val_fraction": params.paths.val_fraction,
            "encoder": encoder,
            "files": [{"path": str(f), "sha256": sha256_file(f)} for f in files],
            "train": [write_shard(d / "train.bin", train_ids, eot, dtype)],
            "val": [write_shard(d / "val.bin", val_ids, eot, dtype)],
        }
        write_json(d / "manifest.json", manifest)
    n_tokens = sum(s["tokens"] for s in manifest["train"] + manifest["val"])
    return {
        "documents": len(docs),
        "bytes": n_bytes,
        "tokens": n_tokens,
        "tokenizer_train_s": t_train,
        "encode_s": t_enc,
        "encode_mb_per_s": n_bytes / 1e6 / t_enc,
        "encode_tokens_per_s": n_tokens / t_enc,
    }


def load_shards(params: Params, split: str):
    """The TokenShards of `split` ('train' or 'val') written by this stage."""
    import json

    from model.data import TokenShards

    d = params.artifacts("tokens")
    if not (d / "manifest.json").exists():
        raise FileNotFoundError(f"{d}/manifest.json missing: run `genpt tokenize` first")
    m = json.loads((d / "manifest.json").read_text())
    return TokenShards([d / s["file"] for s in m[split]], m["dtype"])

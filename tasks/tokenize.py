"""Stage `tokenize`: train the BPE tokenizer and write memory-mapped token shards.

Outputs (under paths.artifacts): tokenizer/ (tokenizer.json + transformers files),
tokens/{train,val}.bin and tokens/manifest.json (counts, dtype, sha256s).
"""

from __future__ import annotations

import glob
import hashlib
import time
from pathlib import Path

import numpy as np

from model.data import token_dtype
from model.tokenizer import EOT, save_tokenizer, train_tokenizer
from tasks.io import atomic_dir, write_json
from tasks.params import Params

ENCODE_CHUNK_LINES = 2000


class CorpusError(ValueError):
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
    return text


def split_document(text: str, val_fraction: float) -> tuple[str, str]:
    """Deterministic split at a line boundary: the last val_fraction goes to validation."""
    lines = text.splitlines(keepends=True)
    n_val = int(len(lines) * val_fraction)
    return "".join(lines[: len(lines) - n_val]), "".join(lines[len(lines) - n_val :])


def encode_text(tokenizer, text: str) -> list[int]:
    """Encode in line chunks with the Rust tokenizer's parallel batch encoder."""
    lines = text.splitlines(keepends=True)
    chunks = [
        "".join(lines[i : i + ENCODE_CHUNK_LINES]) for i in range(0, len(lines), ENCODE_CHUNK_LINES)
    ]
    encs = tokenizer.backend_tokenizer.encode_batch(chunks, add_special_tokens=False)
    return [i for e in encs for i in e.ids]


def write_shard(path: Path, docs: list[list[int]], eot: int, dtype: np.dtype) -> dict:
    ids = np.fromiter((t for d in docs for t in (*d, eot)), dtype=dtype)
    ids.tofile(path)
    return {
        "file": path.name,
        "tokens": int(ids.size),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def run(params: Params) -> dict:
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
    train_ids = [encode_text(tok, p[0]) for p in pairs]
    val_ids = [encode_text(tok, p[1]) for p in pairs if p[1]]
    t_enc = time.perf_counter() - t0

    with atomic_dir(params.artifacts("tokenizer")) as d:
        save_tokenizer(tok, d)
    with atomic_dir(params.artifacts("tokens")) as d:
        manifest = {
            "vocab_size": len(tok),
            "dtype": dtype.name,
            "files": [str(f) for f in files],
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

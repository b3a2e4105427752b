"""Stage `tokenize`: train the BPE tokenizer and write memory-mapped token shards.

Outputs (under paths.artifacts): tokenizer/ (tokenizer.json + transformers files),
tokens/{train,val}.bin and tokens/manifest.json (token counts, dtype, vocab size,
sha256 of every shard, source file and the tokenizer). The work: genpt/ingest/tokens.py.
"""

from __future__ import annotations

import time

from genpt import artifacts
from genpt.artifacts_check import trained_vocab
from genpt.bundle.manifest import sha256_file
from genpt.ingest.corpus import corpus_files, iter_documents, sha256
from genpt.ingest.tokens import encode_docs, split_document, write_shard
from genpt.io import atomic_dir, write_json
from genpt.params import Params

SECTIONS = ("paths", "corpus", "tokenizer")  # the params it reads (dvc.yaml: paths.corpus, ...)


def run(params: Params) -> dict:
    from model.shards import token_dtype
    from model.tokenizer import EOT, save_tokenizer, train_tokenizer

    files = corpus_files(params.paths.corpus)
    # bad input fails here, before any work
    docs = [d.text for d in iter_documents(params.paths.corpus, params.corpus)]
    pairs = [split_document(d, params.paths.val_fraction) for d in docs]
    n_bytes = sum(len(d.encode()) for d in docs)

    t0 = time.perf_counter()
    tok = train_tokenizer(
        (p[0] for p in pairs), params.tokenizer.vocab_size, params.tokenizer.min_frequency
    )
    t_train = time.perf_counter() - t0
    trained_vocab(len(tok), params.tokenizer, params.paths.corpus)
    eot, dtype = tok.convert_tokens_to_ids(EOT), token_dtype(len(tok))

    t0 = time.perf_counter()
    parts = [p[0] for p in pairs] + [p[1] for p in pairs if p[1]]
    ids, encoder = encode_docs(tok, parts, dtype)
    train_ids, val_ids = ids[: len(pairs)], ids[len(pairs) :]
    t_enc = time.perf_counter() - t0

    with atomic_dir(artifacts.tokenizer(params)) as d:
        save_tokenizer(tok, d)
        tok_sha = sha256_file(d / "tokenizer.json")
    with atomic_dir(artifacts.tokens(params)) as d:
        manifest = {
            "vocab_size": len(tok),
            "dtype": dtype.name,
            "eot": eot,
            "tokenizer_sha256": tok_sha,
            "val_fraction": params.paths.val_fraction,
            "encoder": encoder,
            "files": [{"path": f, "sha256": sha256(f)} for f in files],
            "train": [write_shard(d / "train.bin", train_ids, eot, dtype)],
            "val": [write_shard(d / "val.bin", val_ids, eot, dtype)],
        }
        write_json(d / artifacts.tokens_manifest.name, manifest)
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

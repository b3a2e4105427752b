"""Stage `tokenize`: train the BPE tokenizer on a sample, stream the corpus into shards.

Outputs (under paths.artifacts): tokenizer/ (tokenizer.json + transformers files),
tokens/{train,val}-NNNNN.bin (fixed-size shards), tokens/{train,val}.idx (document
index) and tokens/manifest.json (token counts, dtype, vocab size, sha256 of every shard,
source file and the tokenizer, and the inputs that made them). The work, in bounded
memory: genpt/ingest/tokens.py. Re-running with the same corpus and params, its outputs
intact, does nothing.
"""

from __future__ import annotations

import itertools
import time

from genpt import artifacts, artifacts_check
from genpt.bundle.manifest import sha256_file
from genpt.ingest.corpus import iter_documents
from genpt.ingest.token_inputs import cpu_s, inputs, manifest_of, unchanged, unlabeled_documents
from genpt.ingest.tokens import encode_corpus, sample
from genpt.io import atomic_dir, write_json
from genpt.params import Params

SECTIONS = ("paths", "corpus", "tokenizer")  # the params it reads (dvc.yaml: paths.corpus, ...)


def run(params: Params) -> dict:
    from model.progress import progress
    from model.tokenizer import EOT, save_tokenizer, token_dtype, train_tokenizer

    cfg, val_fraction = params.tokenizer, params.paths.val_fraction
    want = inputs(params)
    if m := unchanged(params, want):
        return {"unchanged": True, "tokens": sum(s["tokens"] for s in m["train"] + m["val"])}

    def docs():  # bad input fails in the first pass, before BPE or encoding
        return itertools.chain(iter_documents(params.paths.corpus, params.corpus),
                               unlabeled_documents(params))  # fmt: skip

    seen = {"documents": 0, "bytes": 0}

    def counted():  # pass 1 counts the corpus, so pass 2 can show its progress
        for d in docs():
            seen["documents"] += 1
            seen["bytes"] += d.nbytes
            yield d

    t0 = time.perf_counter()
    texts = sample((d.text for d in counted()), val_fraction, cfg.seed, cfg.sample_bytes)
    t_sample = time.perf_counter() - t0
    sample_bytes = sum(len(t.encode()) for t in texts)
    tok = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency)
    del texts
    t_train = time.perf_counter() - t0 - t_sample
    artifacts_check.trained_vocab(len(tok), cfg, params.paths.corpus)
    eot, dtype = tok.convert_tokens_to_ids(EOT), token_dtype(len(tok))

    bar = progress(seen["documents"], "tokenize: documents encoded", every_s=30)

    def shown():
        for d in docs():
            yield d
            bar.update()

    with atomic_dir(artifacts.tokenizer(params)) as tok_dir:
        save_tokenizer(tok, tok_dir)
        with atomic_dir(artifacts.tokens(params)) as d:
            t0, cpu0 = time.perf_counter(), cpu_s()
            out = encode_corpus(
                shown(), tok, d, dtype=dtype, eot=eot, val_fraction=val_fraction,
                seed=cfg.seed, shard_tokens=cfg.shard_tokens,
            )  # fmt: skip
            t_enc, cpu_enc = time.perf_counter() - t0, cpu_s() - cpu0
            bar.close()
            manifest = manifest_of(tok, dtype, out, want, sha256_file(tok_dir / "tokenizer.json"))
            write_json(d / artifacts.tokens_manifest.name, manifest)
    n_tokens = sum(s["tokens"] for s in manifest["train"] + manifest["val"])
    return {
        **seen,
        "tokens": n_tokens,
        "shards": len(manifest["train"]) + len(manifest["val"]),
        "sample_bytes": sample_bytes,
        "sample_s": t_sample,
        "tokenizer_train_s": t_train,
        "encode_s": t_enc,
        "encode_cpu_s": cpu_enc,  # all processes: wall time on idle cores is about this / cores
        "encode_mb_per_s": seen["bytes"] / 1e6 / t_enc,
        "encode_tokens_per_s": n_tokens / t_enc,
    }

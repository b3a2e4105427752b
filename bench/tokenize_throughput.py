"""Tokenizer training time and encoding throughput on the shared pre-training text.

    PYTHONPATH=. python bench/tokenize_throughput.py [--shared ../shared/data] [--vocab-size 8192]

Corpus: tinyshakespeare + the Gutenberg books + WikiText-2 (~18 MB). Encodes with the
stage's encoder (genpt/ingest/tokens.py: encode_corpus: tiktoken in a process pool, a sample
checked against the HF tokenizer, written to shards) on all cores, then with one worker,
then with the HF tokenizer alone (batch, all cores, and one thread) for comparison, and
checks that all four give the same ids. Prints MB/s and tokens/s. Worker start-up (~2 s)
counts: at this size it is a large share (bench/corpus_scale.py measures at scale).
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "true"


def main() -> None:
    import tempfile

    import numpy as np

    from genpt.ingest.corpus import Document, read_document
    from genpt.ingest.tokens import chunks, encode_corpus
    from model.tokenizer import EOT, train_tokenizer

    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--shared", default=os.environ.get("GENPT_SHARED_DATA", str(root.parent / "shared/data"))
    )
    ap.add_argument("--vocab-size", type=int, default=8192)
    a = ap.parse_args()
    s = Path(a.shared)
    files = sorted(
        Path(f)
        for p in ("tinyshakespeare/*.txt", "gutenberg/*.txt", "wikitext-2/*.txt")
        for f in glob.glob(str(s / p))
    )
    docs = [read_document(f) for f in files]
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(
        f"corpus: {len(files)} files, {mb:.1f} MB; cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    t = time.perf_counter()
    tok = train_tokenizer(docs, a.vocab_size, 2)
    print(f"tokenizer training (vocab {len(tok)}): {time.perf_counter() - t:.1f} s")

    dtype, eot = np.dtype(np.uint16), tok.convert_tokens_to_ids(EOT)
    pieces = [(p, i == len(ps) - 1) for d in docs for ps in [chunks(d)] for i, p in enumerate(ps)]
    hf = tok.backend_tokenizer

    def stage(workers):  # val_fraction 0: every document is train text
        with tempfile.TemporaryDirectory() as d:
            out = encode_corpus(
                [Document(str(f), t) for f, t in zip(files, docs, strict=True)], tok, Path(d),
                dtype=dtype, eot=eot, val_fraction=0.0, seed=0, shard_tokens=2**30,
                workers=workers,
            )  # fmt: skip
            return np.concatenate(
                [np.fromfile(Path(d) / s["file"], dtype) for s in out["train"]["shards"]]
            )

    def plain(parallel):
        os.environ["TOKENIZERS_PARALLELISM"] = parallel
        encoded = hf.encode_batch_fast([p for p, _ in pieces], add_special_tokens=False)
        return np.concatenate(
            [
                np.asarray(e.ids + [eot] * end, dtype)
                for e, (_, end) in zip(encoded, pieces, strict=True)
            ]
        )

    runs = {
        "stage encoder, all cores": lambda: stage(None),
        "stage encoder, 1 worker ": lambda: stage(1),
        "HF tokenizers, all cores": lambda: plain("true"),
        "HF tokenizers, 1 thread ": lambda: plain("false"),
    }
    first = None
    for name, fn in runs.items():
        t = time.perf_counter()
        ids = fn()
        dt = time.perf_counter() - t
        first = ids if first is None else first
        same = "same ids" if np.array_equal(ids, first) else "DIFFERENT ids"
        print(
            f"encode, {name}: {dt:.2f} s, {mb / dt:5.2f} MB/s, "
            f"{ids.size / dt / 1e6:.2f} M tok/s, {same}"
        )


if __name__ == "__main__":
    main()

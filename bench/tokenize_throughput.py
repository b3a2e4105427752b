"""Tokenizer training time and encoding throughput on the shared pre-training text.

    PYTHONPATH=. python bench/tokenize_throughput.py [--shared ../shared/data] [--vocab-size 8192]

Corpus: tinyshakespeare + the Gutenberg books + WikiText-2 (~18 MB). Encodes with the
stage's parallel batch encoder (tasks/tokenize.py: encode_docs), then once more with
TOKENIZERS_PARALLELISM=false (one thread) for comparison. Prints MB/s and tokens/s.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "true"


def main() -> None:
    import numpy as np

    from model.tokenizer import train_tokenizer
    from tasks.tokenize import encode_docs, read_document

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

    dtype = np.dtype(np.uint16)
    for mode in ("true", "false"):
        os.environ["TOKENIZERS_PARALLELISM"] = mode
        t = time.perf_counter()
        ids = encode_docs(tok, docs, dtype)
        dt = time.perf_counter() - t
        n = sum(x.size for x in ids)
        name = "parallel batch" if mode == "true" else "one thread    "
        print(
            f"encode, {name}: {dt:.1f} s, {mb / dt:.2f} MB/s, {n / dt / 1e6:.2f} M tokens/s "
            f"({n} tokens)"
        )


if __name__ == "__main__":
    main()

"""Reading speed of every local corpus source format (genpt/ingest/corpus.py).

    PYTHONPATH=. python bench/corpus_formats.py [--copies 10]

The default corpus (data/corpus, 2.9 MB) repeated `copies` times is written as .txt,
.txt.gz, .txt.zst (a file per document), one JSONL file, one Parquet file and a
`datasets` save_to_disk directory; each is read through iter_documents, checked to give
the same texts, and timed. Prints a Markdown table (s, MB/s of decoded text).
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genpt.ingest import corpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=10)
    args = ap.parse_args()
    datasets.disable_progress_bars()
    files = corpus.corpus_files(["data/corpus/*.txt"])
    texts = [corpus.read_document(f) for f in files] * args.copies
    mb = sum(len(t.encode()) for t in texts) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for sub in ("txt", "gz", "zst"):
            (d / sub).mkdir()
        for i, t in enumerate(texts):
            (d / "txt" / f"{i:04}.txt").write_text(t)
            (d / "gz" / f"{i:04}.txt.gz").write_bytes(gzip.compress(t.encode()))
            with pa.output_stream(str(d / "zst" / f"{i:04}.txt.zst"), compression="zstd") as f:
                f.write(t.encode())
        (d / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        pq.write_table(pa.table({"text": texts}), d / "c.parquet")
        datasets.Dataset.from_dict({"text": texts}).save_to_disk(d / "ds")
        cases = {
            "txt": f"{d}/txt/*.txt",
            "txt.gz": f"{d}/gz/*.gz",
            "txt.zst": f"{d}/zst/*.zst",
            "jsonl": f"{d}/c.jsonl",
            "parquet": f"{d}/c.parquet",
            "datasets dir": str(d / "ds"),
        }
        print(f"| source ({len(texts)} documents, {mb:.0f} MB) | s | MB/s |\n|---|---|---|")
        for name, src in cases.items():
            t0 = time.perf_counter()
            got = [doc.text for doc in corpus.iter_documents([src])]
            dt = time.perf_counter() - t0
            assert got == texts, f"{name}: other texts"
            print(f"| {name} | {dt:.2f} | {mb / dt:.0f} |")


if __name__ == "__main__":
    main()

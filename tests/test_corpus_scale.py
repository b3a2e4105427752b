"""`genpt validate` runs in bounded memory: its peak RSS does not grow with the corpus.

The corpora are distinct documents cut from ../shared/data text (the default corpus's
Gutenberg books, Tiny Shakespeare, WikiText-2), so the duplicate check keeps every one
and the default datasets' leakage check passes. The peak is that of the whole process
tree (the stage and its workers), polled from /proc through psutil.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_BYTES = 512 * 1024  # about a book


def paragraphs(shared: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "data"))
    from build_default import CORPUS_BOOKS, strip_gutenberg

    texts = [
        strip_gutenberg((shared / "gutenberg" / b).read_text("utf-8-sig")) for b in CORPUS_BOOKS
    ]
    texts += [(shared / p).read_text("utf-8") for p in ("tinyshakespeare/input.txt",
                                                          "wikitext-2/valid.txt")]  # fmt: skip
    return [p.strip() for t in texts for p in t.split("\n\n") if len(p.strip()) > 40]


def make_corpus(out: Path, megabytes: float, shared: Path, seed: int = 0) -> list[str]:
    """Distinct documents of about DOC_BYTES each, `megabytes` in all; its glob."""
    out.mkdir(parents=True, exist_ok=True)
    paras, rng, total, i = paragraphs(shared), random.Random(seed), 0, 0
    while total < megabytes * 2**20:
        doc, size = [f"Document {i} of the generated corpus."], 0
        while size < DOC_BYTES:
            doc.append(rng.choice(paras))
            size += len(doc[-1]) + 2
        data = "\n\n".join(doc).encode() + b"\n"
        (out / f"doc{i:06d}.txt").write_bytes(data)
        total, i = total + len(data), i + 1
    return [str(out / "*.txt")]


def run_measured(
    args: list[str], poll_s: float = 0.02
) -> tuple[subprocess.CompletedProcess, int, float]:
    """Run a command; its result, the peak RSS of its process tree (bytes) and wall time."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:  # a worker exited between listing and reading
            pass
        time.sleep(poll_s)
    out, err = proc.communicate()
    return (
        subprocess.CompletedProcess(args, proc.returncode, out, err),
        peak,
        time.perf_counter() - t0,
    )


def validate_cmd(corpus: list[str], root: Path, art: Path) -> list[str]:
    sets = [f"paths.corpus={json.dumps(corpus)}", f"corpus.root={root}", f"paths.artifacts={art}"]
    return [sys.executable, "-m", "tasks.cli", "validate", *(x for s in sets for x in ("-S", s))]


@pytest.mark.slow
def test_validate_memory_does_not_grow_with_the_corpus(shared_data, tmp_path):
    """25 MB and 4x that (100 MB; 50/200 MB would take minutes on the 2-core CI box): the
    tree's peak RSS stays under 1.5 GB, and the bigger run's within 1.25x + 60 MB of the
    smaller's: it catches ~3 bytes of RSS per corpus byte. The pre-streaming validate held
    ~10 (1.0 GB at 64 MB) and fails here (555 -> 1382 MiB); this one: ~680 -> 790 MiB."""
    peaks = []
    for mb in (25, 100):
        corpus = make_corpus(tmp_path / f"c{mb}", mb, shared_data)
        r, peak, wall = run_measured(validate_cmd(corpus, tmp_path / f"c{mb}", tmp_path / f"a{mb}"))
        assert r.returncode == 0, r.stderr[-2000:]
        s = json.loads((tmp_path / f"a{mb}" / "validate" / "summary.json").read_text())
        assert s["success"] and s["corpus"]["duplicate_docs"] == 0
        assert s["corpus"]["bytes"] >= mb * 2**20
        print(f"{mb} MB: peak RSS {peak / 2**20:.0f} MiB, {wall:.1f} s")
        peaks.append(peak)
    assert peaks[0] < 1.5 * 2**30
    assert peaks[1] <= 1.25 * peaks[0] + 60 * 2**20, peaks

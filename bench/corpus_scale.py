"""Validate and tokenize at corpus scale: wall time, MB/s and peak memory per stage.

    PYTHONPATH=. python bench/corpus_scale.py --dir /tmp/scale [--sizes 0.25 1 5]
        [--shared ../shared/data] [--doc-mb 1] [--stages validate tokenize]

For each size (GB of UTF-8 text) it writes a corpus of distinct documents under
DIR/corpus-SIZE (kept, and reused when complete), then runs `genpt validate` and `genpt
tokenize` on it as subprocesses, with params overrides pointing paths.corpus, corpus.root
and paths.artifacts there. A document is about --doc-mb of paragraphs drawn at random
(seeded by its number) from Gutenberg books (those in neither labelled dataset, so
validation's leakage check passes), tinyshakespeare and WikiText-2, with its own heading:
no two documents are equal. Peak memory is reported twice: the largest single process
(wait4's ru_maxrss) and the sum over the stage's process tree (psutil, sampled every
0.2 s; the figure the machine feels) of PSS, which splits shared pages among the processes
that share them (RSS would count a forked child's pages twice before it execs). Prints a
table and writes DIR/corpus_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Gutenberg books used by neither `authors` (158, 98, 74, 345) nor `cloze` (120, 514, 1400,
# 2701): data/README.md
BOOKS = ("11-0", "1342-0", "1661", "84-0", "145", "2600-0", "76-0")
SOURCES = [f"gutenberg/{b}.txt" for b in BOOKS] + [
    "tinyshakespeare/input.txt",
    "wikitext-2/valid.txt",
    "wikitext-2/test.txt",
]


def paragraphs(shared: Path) -> list[str]:
    paras = []
    for s in SOURCES:
        text = (shared / s).read_text(encoding="utf-8-sig").replace("\r\n", "\n")
        paras += [p.strip() + "\n\n" for p in text.split("\n\n") if len(p.strip()) > 40]
    return paras


def make_corpus(d: Path, gb: float, shared: Path, doc_mb: float) -> int:
    """Distinct documents summing to `gb` GB under d; their count. Reused if complete."""
    done = d / "COMPLETE"
    if done.exists():
        return int(done.read_text())
    d.mkdir(parents=True, exist_ok=True)
    paras = paragraphs(shared)
    mean = np.mean([len(p.encode()) for p in paras])
    total, n = 0, 0
    while total < gb * 1e9:
        rng = np.random.default_rng([7, n])
        k = int(rng.uniform(0.5, 1.5) * doc_mb * 1e6 / mean)
        body = "".join(paras[i] for i in rng.integers(0, len(paras), k))
        data = f"Document {n}\n\n{body}".encode()
        (d / f"doc{n:06d}.txt").write_bytes(data)
        total, n = total + len(data), n + 1
    done.write_text(str(n))
    return n


def run_stage(cmd: list[str], log: Path) -> dict:
    """Run cmd; its wall time, CPU time, exit code and peak memory (the largest process's
    RSS, and the process tree's PSS)."""
    import psutil

    peak = [0]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        stop = threading.Event()

        def sample():
            proc = psutil.Process(p.pid)
            while not stop.wait(0.2):
                try:
                    procs = [proc, *proc.children(recursive=True)]
                    peak[0] = max(peak[0], sum(q.memory_full_info().pss for q in procs))
                except psutil.Error:
                    pass

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        th.join()
    return {
        "rc": p.returncode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # the tree's: load-independent
        "max_process_rss_gb": round(usage.ru_maxrss / 2**20, 2),  # KiB -> GiB
        "tree_pss_gb": round(peak[0] / 2**30, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 5], help="GB")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--doc-mb", type=float, default=1.0, help="mean document size")
    ap.add_argument("--stages", nargs="+", default=["validate", "tokenize"])
    a = ap.parse_args()
    genpt = str(Path(sys.executable).with_name("genpt"))
    rows = []
    for gb in a.sizes:
        d = a.dir / f"corpus-{gb:g}"
        t0 = time.perf_counter()
        n_docs = make_corpus(d / "text", gb, a.shared, a.doc_mb)
        mb = sum(f.stat().st_size for f in (d / "text").glob("*.txt")) / 1e6
        print(f"{gb:g} GB: {n_docs} documents, {mb:.0f} MB ({time.perf_counter() - t0:.0f} s)")
        shutil.rmtree(d / "art", ignore_errors=True)  # else tokenize finds its outputs current
        sets = [f"paths.corpus=[{d}/text/*.txt]", f"corpus.root={d}/text",
                f"paths.artifacts={d}/art"]  # fmt: skip
        for stage in a.stages:
            cmd = [genpt, stage, *[x for s in sets for x in ("-S", s)]]
            r = run_stage(cmd, d / f"{stage}.log")
            r |= {"gb": gb, "stage": stage, "documents": n_docs, "mb": round(mb)}
            r["mb_per_s"] = round(mb / r["wall_s"], 1)
            r["load_average"] = round(os.getloadavg()[0], 1)
            if stage == "tokenize" and r["rc"] == 0:  # its printed result: the last JSON
                log = (d / f"{stage}.log").read_text()
                r["result"] = json.loads(log[log.rfind("\n{") + 1 :])
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    print("| GB | stage | rc | wall s | MB/s | CPU s | max process RSS GB | tree PSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['gb']:g} | {r['stage']} | {r['rc']} | {r['wall_s']} | {r['mb_per_s']} "
              f"| {r['cpu_s']} | {r['max_process_rss_gb']} | {r['tree_pss_gb']} |")  # fmt: skip
    (a.dir / "corpus_scale.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

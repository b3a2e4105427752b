"""Rebuild the default data in data/ from ../shared/data (see data/README.md).

    python data/build_default.py [--shared ../shared/data]

Public-domain sources only. Gutenberg texts are cut to the text between the
"*** START OF" and "*** END OF" markers, so no Project Gutenberg trademark text
remains. Output is deterministic.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent
CORPUS_BOOKS = {
    "11-0.txt": "alice",
    "1342-0.txt": "pride_and_prejudice",
    "1661.txt": "sherlock_holmes",
    "84-0.txt": "frankenstein",
}
# Authorship classification: held-out books (not in the corpus), one per author.
AUTHOR_BOOKS = {
    "158-0.txt": "austen",
    "98-0.txt": "dickens",
    "74-0.txt": "twain",
    "345.txt": "stoker",
}


def strip_gutenberg(text: str) -> str:
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    start = re.search(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", text, re.M | re.I)
    end = re.search(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", text, re.M | re.I)
    if not start or not end:
        raise ValueError("Gutenberg START/END markers not found")
    body = text[start.end() : end.start()]
    tail = re.search(r"\n\s*End of (the |this )?Project Gutenberg", body, re.I)
    if tail and tail.start() > len(body) - 2000:
        body = body[: tail.start()]
    body = re.sub(r"^\s*Produced by[^\n]*(\n[^\n]+)*\n\s*\n", "", body, count=1)
    return body.strip() + "\n"


def paragraphs(text: str, lo: int = 200, hi: int = 700) -> list[str]:
    out = []
    for p in re.split(r"\n\s*\n", text):
        p = " ".join(p.split())
        if lo <= len(p) <= hi and not p.isupper():
            out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "data"))
    shared = Path(ap.parse_args().shared)
    corpus = HERE / "corpus"
    corpus.mkdir(exist_ok=True)
    (corpus / "tinyshakespeare.txt").write_bytes(
        (shared / "tinyshakespeare/input.txt").read_bytes()
    )
    for name, slug in CORPUS_BOOKS.items():
        text = strip_gutenberg((shared / "gutenberg" / name).read_text(encoding="utf-8-sig"))
        (corpus / f"{slug}.txt").write_text(text, encoding="utf-8")

    rng = random.Random(0)
    rows = []
    for name, author in AUTHOR_BOOKS.items():
        text = strip_gutenberg((shared / "gutenberg" / name).read_text(encoding="utf-8-sig"))
        paras = paragraphs(text)
        rng.shuffle(paras)
        rows += [{"text": p, "label": author} for p in paras[:400]]
    rng.shuffle(rows)
    out = HERE / "finetune" / "authors"
    out.mkdir(parents=True, exist_ok=True)
    n_dev = len(rows) // 5
    for split, part in (("dev", rows[:n_dev]), ("train", rows[n_dev:])):
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)


if __name__ == "__main__":
    main()

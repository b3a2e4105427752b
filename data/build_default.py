"""Rebuild the default data in data/ from ../shared/data (see data/README.md).

    python data/build_default.py [--shared ../shared/data] [--out data]

Pre-training corpus and `authors`: public-domain Gutenberg texts, cut to the text
between the "*** START OF" and "*** END OF" markers, so no Project Gutenberg
trademark text remains. `snli`, `stsb`, `arc`: CC BY-SA 4.0 sets converted to the
canonical schema by the adapters in genpt/ingest/loaders.py. Output is deterministic.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # tasks.loaders: the same adapters the pipeline uses
CORPUS_BOOKS = {
    "11-0.txt": "alice",
    "1342-0.txt": "pride_and_prejudice",
    "1661.txt": "sherlock_holmes",
    "84-0.txt": "frankenstein",
}
# Next-sentence choice (Story Cloze's shape): more held-out books, in neither set above.
CLOZE_BOOKS = ["120-0.txt", "514.txt", "1400-0.txt", "2701-0.txt"]
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


SENTENCE = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”’]))\s+(?=[\"“‘]?[A-Z])")


def cloze_rows(text: str, rng: random.Random, n: int) -> list[dict]:
    """Multiple choice: up to 4 sentences of a paragraph as context; the choices are the
    sentence that follows it and a sentence from another paragraph of the same book."""
    paras = [SENTENCE.split(p) for p in paragraphs(text, 200, 1200)]
    paras = [s for s in paras if len(s) >= 4 and all(15 <= len(x) <= 250 for x in s)]
    rng.shuffle(paras)
    rows = []
    for i, sents in enumerate(paras[:n]):
        k = min(4, len(sents) - 1)
        other = paras[(i + 1 + rng.randrange(len(paras) - 1)) % len(paras)]
        choices = [sents[k], rng.choice(other)]
        label = i % 2  # the right ending first or second, alternately: no position prior
        if label:
            choices.reverse()
        rows.append({"context": " ".join(sents[:k]), "question": "", "choices": choices,
                     "label": label})  # fmt: skip
    return rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    from genpt.ingest.loaders import dump_jsonl

    path.parent.mkdir(parents=True, exist_ok=True)
    dump_jsonl(rows, path)


def build_labelled(shared: Path, out: Path) -> None:
    """snli (entailment), stsb (similarity, score 0-5), arc (multiple choice)."""
    from genpt.ingest import loaders
    from genpt.ingest.leakage import record_keys

    out = out / "finetune"
    # SNLI: the shared subset holds the first ~1.3k lines of the official dev and test
    # files; official dev -> our train, official test -> our dev ("-" labels dropped).
    snli = shared / "snli_subset"
    write_jsonl(loaders.snli(str(snli / "snli_1.0_dev.jsonl")), out / "snli" / "train.jsonl")
    write_jsonl(loaders.snli(str(snli / "snli_1.0_test.jsonl")), out / "snli" / "dev.jsonl")
    # STS-B: a random 2,000-row sample of train (the file is sorted by genre), full dev.
    stsb = shared / "glue" / "STS-B"
    train = loaders.glue_stsb(str(stsb / "train.tsv"))
    random.Random(1).shuffle(train)
    write_jsonl(train[:2000], out / "stsb" / "train.jsonl")
    # dev pairs that repeat a train pair (normalized) are dropped: no train/dev leakage.
    seen = set(record_keys(train[:2000], "similarity")[1])
    dev = loaders.glue_stsb(str(stsb / "dev.tsv"))
    dev = [r for r, k in zip(dev, record_keys(dev, "similarity")[1], strict=True) if k not in seen]
    write_jsonl(dev, out / "stsb" / "dev.jsonl")
    # ARC: Easy + Challenge (3 to 5 choices), train shuffled (so max_train_examples takes a
    # fair sample).
    arc = shared / "arc"
    for split, name in (("train", "Train"), ("dev", "Dev")):
        rows = [
            r
            for level in ("Easy", "Challenge")
            for r in loaders.arc(str(arc / f"ARC-{level}" / f"ARC-{level}-{name}.jsonl"))
        ]
        if split == "train":
            random.Random(2).shuffle(rows)
        write_jsonl(rows, out / "arc" / f"{split}.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(HERE), help="where corpus/ and finetune/ go")
    args = ap.parse_args()
    build(Path(args.shared), Path(args.out))


def build(shared: Path, out: Path) -> None:
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
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
    authors = out / "finetune" / "authors"
    authors.mkdir(parents=True, exist_ok=True)
    n_dev = len(rows) // 5
    for split, part in (("dev", rows[:n_dev]), ("train", rows[n_dev:])):
        with open(authors / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
    build_labelled(shared, out)
    build_cloze(shared, out)


def build_cloze(shared: Path, out: Path) -> None:
    rng, rows = random.Random(3), []
    for name in CLOZE_BOOKS:
        text = strip_gutenberg((shared / "gutenberg" / name).read_text(encoding="utf-8-sig"))
        rows += cloze_rows(text, rng, 300)
    rng.shuffle(rows)
    n_dev = len(rows) // 4 // 2 * 2
    write_jsonl(rows[n_dev:], out / "finetune" / "cloze" / "train.jsonl")
    write_jsonl(rows[:n_dev], out / "finetune" / "cloze" / "dev.jsonl")


if __name__ == "__main__":
    main()

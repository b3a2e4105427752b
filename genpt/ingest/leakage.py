"""Leakage checks: duplicate keys of records and a word n-gram index of the corpus.

A dev or test record leaks when its text is a train record's (exact, or normalized:
lower case, punctuation removed), or when enough of its n-grams occur in the
pre-training corpus.
"""

from __future__ import annotations

import re

import numpy as np

from model.schema import TEXT_FIELDS

NON_WORD = re.compile(r"[\W_]+")
WORD = re.compile(r"[^\W_]+")


def normalize(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: the 'normalized duplicate' key."""
    return " ".join(NON_WORD.sub(" ", text.lower()).split())


def record_keys(records: list[dict], task_type: str) -> tuple[list[str], list[str]]:
    """Per record, its exact and normalized duplicate keys (all text fields and choices).

    Each distinct field text is normalized once: RACE repeats an article per question.
    """
    cache: dict[str, str] = {}
    exact, norm = [], []
    for r in records:
        parts = [str(r.get(k) or "") for k in TEXT_FIELDS[task_type]]
        parts += [str(c) for c in r.get("choices") or []]
        exact.append("\t".join(parts))
        for p in parts:
            if p not in cache:
                cache[p] = normalize(p)
        norm.append(" ".join(cache[p] for p in parts if cache[p]))
    return exact, norm


def ngrams(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the word n-grams of normalized texts, and the index of the text of each."""
    ids = [np.fromiter(map(hash, WORD.findall(t.lower())), np.int64) for t in texts]
    lens = np.array([len(a) for a in ids], np.int64)
    flat = np.concatenate(ids).astype(np.uint64) if ids else np.zeros(0, np.uint64)
    owner = np.repeat(np.arange(len(texts)), lens)
    m = len(flat) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    h = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):  # polynomial hash of words k..k+n-1, wrapping mod 2**64
            h = h * np.uint64(1_000_003) + flat[k : k + m]
    inside = owner[:m] == owner[n - 1 :]  # n-grams that do not cross two texts
    return h[inside], owner[:m][inside]


class NgramIndex:
    """Word n-grams of the pre-training corpus, for 'eval text found in corpus' checks."""

    def __init__(self, texts: list[str], n: int) -> None:
        self.n = n
        self.table = np.sort(ngrams(texts, n)[0])  # repeats are harmless to searchsorted

    def shares(self, texts: list[str]) -> np.ndarray:
        """Per text, the share of its n-grams found in the corpus (nan: under n words)."""
        first: dict[str, int] = {}  # each distinct text is looked up once
        which = [first.setdefault(t, len(first)) for t in texts]
        return self._shares(list(first))[which]

    def _shares(self, texts: list[str]) -> np.ndarray:
        h, owner = ngrams(texts, self.n)
        order = np.argsort(h)  # sorted queries walk the table in order: fewer cache misses
        h, owner = h[order], owner[order]
        total = np.bincount(owner, minlength=len(texts))
        i = np.searchsorted(self.table, h).clip(max=max(len(self.table) - 1, 0))
        found = self.table[i] == h if len(self.table) else np.zeros(len(h), bool)
        hits = np.bincount(owner, weights=found, minlength=len(texts))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, hits / total, np.nan)


def leak_flags(
    records: list[dict],
    task_type: str,
    train_keys: tuple[set, set],
    index: NgramIndex | None,
    share: float,
) -> tuple[list[bool], list[bool], dict]:
    """Per record: same text as a train record (exact or normalized); text found in corpus
    (any text field, or any of a multiple-choice record's choices)."""
    exact, norm = record_keys(records, task_type)
    is_exact = [k in train_keys[0] for k in exact]
    is_norm = [k in train_keys[1] for k in norm]
    in_corpus = np.zeros(len(records), bool)
    if index is not None:
        for field in TEXT_FIELDS[task_type]:
            s = index.shares([str(r.get(field) or "") for r in records])
            in_corpus |= np.nan_to_num(s, nan=0.0) >= share
        owner = [i for i, r in enumerate(records) for _ in r.get("choices") or []]
        if owner:
            s = index.shares([str(c) for r in records for c in r.get("choices") or []])
            np.logical_or.at(in_corpus, owner, np.nan_to_num(s, nan=0.0) >= share)
    in_train = [a or b for a, b in zip(is_exact, is_norm, strict=True)]
    stats = {
        "leak_train_exact": sum(is_exact),
        "leak_train_normalized": sum(is_norm),
        "leak_corpus": int(in_corpus.sum()),
    }
    return in_train, in_corpus.tolist(), stats

"""Leakage checks: duplicate keys of records, and eval texts found in the corpus.

A dev or test record leaks when its text is a train record's (exact, or normalized:
lower case, punctuation removed), or when enough of its word n-grams occur in the
pre-training corpus. The corpus is too big to index; the eval texts are not. So
EvalNgrams indexes the n-grams of the eval texts, and the corpus is scanned through it
one document at a time (genpt/ingest/scan.py), marking the n-grams it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from model.schema import TEXT_FIELDS

NON_WORD = re.compile(r"[\W_]+")


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


CHUNK = 1 << 20  # characters hashed at a time: bounds the arrays of a long document
_ASCII_WORD = np.array([chr(c).isalnum() for c in range(128)])
_ASCII_LOWER = np.array([ord(chr(c).lower()) for c in range(128)], np.uint32)
_B = 1_000_003  # odd, so invertible mod 2**64


def _powers(b: int, k: int) -> np.ndarray:
    """b**0 .. b**(k-1) mod 2**64."""
    return np.concatenate([[np.uint64(1)], np.cumprod(np.full(k - 1, b, np.uint64))])


_POW, _INV = _powers(_B, CHUNK + 4096), _powers(pow(_B, -1, 2**64), CHUNK + 4096)


def _chunk_words(text: str) -> tuple[np.ndarray, np.ndarray]:
    c = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    ascii_ = c < 128
    word, low = _ASCII_WORD[c & 127], _ASCII_LOWER[c & 127]
    if not ascii_.all():  # the few distinct other characters, classified by Python
        u, inv = np.unique(c[~ascii_], return_inverse=True)
        ch = [chr(x) for x in u]
        word[~ascii_] = np.array([x.isalnum() for x in ch])[inv]
        low[~ascii_] = np.array([ord(y) if len(y := x.lower()) == 1 else ord(x) for x in ch])[inv]
    edge = np.diff(np.concatenate([[0], word.view(np.int8), [0]]))
    start, end = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    with np.errstate(over="ignore"):  # polynomial hashes of the words, mod 2**64
        prefix = np.concatenate([[np.uint64(0)], np.cumsum(low * _POW[: len(c)])])
        return (prefix[end] - prefix[start]) * _INV[start], start


def words(text: str) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes and start offsets of a text's words: runs of letters and digits
    (str.isalnum, the regex [^\\W_]+), lower case. numpy, with no Python object per word."""
    hashes, starts, i = [], [], 0
    while i < len(text):
        j = min(i + CHUNK, len(text))
        if j < len(text):  # cut where no word goes on
            m = NON_WORD.search(text, j, j + 4096)
            j = m.start() if m else j
        h, s = _chunk_words(text[i:j])
        hashes.append(h)
        starts.append(s + i)
        i = j
    if not hashes:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return np.concatenate(hashes), np.concatenate(starts)


def _ngrams(ids: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Hashes (mod 2**64) of the n-grams of word ids that do not cross two owners, their
    owners, and whether all their words are known (id -1: no eval text has the word)."""
    m = len(ids) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, bool)
    x, h = ids.astype(np.uint64), np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * np.uint64(_B) + x[k : k + m]
    unknown = np.concatenate([[0], np.cumsum(ids < 0)])
    inside = owner[:m] == owner[n - 1 :]
    return h[inside], owner[:m][inside], (unknown[n:] == unknown[:-n])[inside]


class EvalNgrams:
    """The word n-grams of the eval texts, and which of them the scanned corpus holds.

    Words are hashed by `words` (not by Python's salted hash) and numbered by their place
    in the eval texts' vocabulary, so worker processes given the index find the
    same n-grams. Memory: 8 bytes per distinct eval word and per distinct eval n-gram.
    """

    def __init__(self, texts: Iterable[str], n: int) -> None:
        import pandas as pd  # its hash-table Index looks ids up ~7x faster than searchsorted

        self.n = n
        distinct = list(dict.fromkeys(texts))
        self.vocab = pd.Index(np.unique(words("\n".join(distinct))[0]))
        self.table = pd.Index(np.unique(self._grams(distinct)[0]))
        self.found = np.zeros(len(self.table), bool)

    def _grams(self, texts: list[str]) -> tuple[np.ndarray, ...]:
        """_ngrams of texts (each its own owner) with the eval texts' word ids."""
        h, start = words("\n".join(texts))
        ends = np.cumsum([len(t) + 1 for t in texts])
        owner = np.searchsorted(ends, start, side="right")
        return _ngrams(self.vocab.get_indexer(h), owner, self.n)

    def _rows(self, h: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Per n-gram hash, its row in the table, or -1."""
        rows = np.full(len(h), -1)
        rows[known] = self.table.get_indexer(h[known])
        return rows

    def scan(self, text: str) -> np.ndarray:
        """The table rows of the eval n-grams that occur in one corpus document."""
        h, _, known = self._grams([text])
        rows = self._rows(h, known)
        return np.unique(rows[rows >= 0])

    def mark(self, rows) -> None:
        self.found[rows] = True

    def shares(self, texts: list[str]) -> np.ndarray:
        """Per eval text (one given to the constructor), the share of its n-grams found in
        the scanned corpus (nan: under n words; an n-gram not indexed counts as not found)."""
        first: dict[str, int] = {}  # each distinct text is looked up once
        which = [first.setdefault(t, len(first)) for t in texts]
        h, owner, known = self._grams(list(first))
        rows = self._rows(h, known)
        found = np.append(self.found, False)[rows]  # row -1: not found
        hits = np.bincount(owner, weights=found, minlength=len(first))
        total = np.bincount(owner, minlength=len(first))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, hits / total, np.nan)[which]


def eval_texts(records: list[dict], task_type: str) -> list[str]:
    """The texts of records that leak_flags looks up: every text field, every choice."""
    texts = [str(r.get(f) or "") for f in TEXT_FIELDS[task_type] for r in records]
    return texts + [str(c) for r in records for c in r.get("choices") or []]


def leak_flags(
    records: list[dict],
    task_type: str,
    train_keys: tuple[set, set],
    index: EvalNgrams | None,
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


SEPARATOR = " genptrowseparator "  # a word no eval text holds: no n-gram crosses two rows


def field_texts(records: list[dict], field: str) -> list[str]:
    """Each record's text in `field` (`choices`: all of them, one text)."""
    if field == "choices":
        return [SEPARATOR.join(map(str, r.get("choices") or [])) for r in records]
    return [str(r.get(field) or "") for r in records]


def near_duplicates(
    rows: list[dict],
    pool: list[dict],
    task_type: str,
    corpus: Iterable[str],
    n: int,
    share: float,
    min_words: int = 4,
) -> list[str | None]:
    """Per held-out row, why it is not clean, or None. Against the label pool, the whole row
    as validate compares train and dev: the same text (exact or normalized), one's
    normalized text inside the other's (min_words+ words: a phrase of a sentence, as SST-2's
    are), or, in every field, a share of its word n-grams found in the pool's same field.
    Against the corpus (each document of `corpus`, streamed), each text field and choice,
    as validate's leakage check.
    A row of two fields (entailment, similarity) repeats the pool only when both are found:
    an SNLI premise with a new hypothesis is a new example, as in validate's rule."""
    why: list[str | None] = [None] * len(rows)
    keys, pool_keys = record_keys(rows, task_type), record_keys(pool, task_type)
    exact, norm = set(pool_keys[0]), set(pool_keys[1])
    for i, (e, k) in enumerate(zip(*keys, strict=True)):
        if e in exact or k in norm:
            why[i] = "label pool: the same text"
    mine = [f" {k} " for k in keys[1]]
    theirs = [f" {k} " for k in pool_keys[1] if len(k.split()) >= min_words]
    everything = "\n".join(theirs)
    ends = np.cumsum([len(t) + 1 for t in mine])
    joined = "\n".join(mine)
    for i, t in enumerate(mine):
        if why[i] is None and len(t.split()) >= min_words and t in everything:
            why[i] = "label pool: inside a pool row"
    for t in theirs:  # a pool row inside a held-out row
        at = joined.find(t)
        while at >= 0:
            i = int(np.searchsorted(ends, at, side="right"))
            if why[i] is None and mine[i] != t:
                why[i] = "label pool: holds a pool row"
            at = joined.find(t, at + 1)
    near = np.ones(len(rows), bool)  # every field found in the pool's same field
    for f in [*TEXT_FIELDS[task_type], "choices"]:
        mine_f, theirs_f = (field_texts(x, f) for x in (rows, pool))
        index = EvalNgrams(mine_f, n)
        index.mark(index.scan(SEPARATOR.join(theirs_f)))
        shares = index.shares(mine_f)
        known = {normalize(t) for t in theirs_f}
        short = np.array([normalize(t) in known for t in mine_f])  # under n words: exact
        near &= np.where(np.isnan(shares), short, np.nan_to_num(shares) >= share)
    for i in np.flatnonzero(near):
        if why[i] is None:
            why[i] = f"label pool: {share:.0%}+ of the {n}-grams of every field"
    fields = EvalNgrams(eval_texts(rows, task_type), n)
    for doc in corpus:
        fields.mark(fields.scan(doc))
    in_corpus = leak_flags(rows, task_type, (set(), set()), fields, share)[1]
    found = ["corpus: a text found" if c else None for c in in_corpus]
    return [w or c for w, c in zip(why, found, strict=True)]

"""Unlabeled in-domain text, GPT-1's setting (Gururangan et al. 2020, task-adaptive
pre-training): each dataset's label pool, as text without labels, joins the corpus.

A pool row's text is its text fields and choices, one per line, in file order; rows are
separated by a blank line. Never in it: the held-out report rows, and any pool row that
shares a text (normalized) with a held-out, dev or test row. A dataset's `unlabeled`
files follow its rows. With corpus.in_domain_share, the whole is repeated to make up about
that share of the corpus's bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

from genpt.ingest.corpus import iter_documents
from genpt.ingest.leakage import field_texts, normalize
from genpt.ingest.loaders import load_split, split_path
from genpt.params import CorpusConfig
from model.schema import TEXT_FIELDS


def _texts(records: list[dict], task_type: str) -> list[set[str]]:
    """Per record, the normalized texts of its fields and choices."""
    fields = [field_texts(records, f) for f in TEXT_FIELDS[task_type]]
    choices = [[normalize(str(c)) for c in r.get("choices") or []] for r in records]
    return [({normalize(t[i]) for t in fields} | set(choices[i])) - {""}
            for i in range(len(records))]  # fmt: skip


def pool_text(ds, pool: list[dict], report: list[dict]) -> tuple[list[str], int]:
    """(each clean pool row's text, how many pool rows were left out): a row sharing any
    text with a held-out, dev or test row is left out."""
    sealed = [report] + [load_split(ds, s) for s in ("dev", "test") if split_path(ds, s)]
    banned = set().union(*(t for rows in sealed for t in _texts(rows, ds.task_type)))
    keep = [r for r, t in zip(pool, _texts(pool, ds.task_type), strict=True) if not t & banned]
    fields = TEXT_FIELDS[ds.task_type]
    out = ["\n".join([*(str(r.get(f) or "").strip() for f in fields),
                      *(str(c).strip() for c in r.get("choices") or [])]).strip()
           for r in keep]  # fmt: skip
    return [t for t in out if t], len(pool) - len(keep)


def unlabeled_docs(ds) -> Iterator[str]:
    """The dataset's declared unlabeled text, one document at a time (streamed)."""
    if ds.unlabeled:
        cfg = CorpusConfig(root="/", format="text")  # any folder: dvc tracks data/ (README)
        yield from (d.text for d in iter_documents(ds.unlabeled, cfg))


def repeats(share: float | None, task_bytes: int, corpus_bytes: int) -> int:
    """How many times the task text goes in, so that it makes up about `share` of the
    bytes beside the corpus's (at least once)."""
    if not share or task_bytes == 0:
        return 1
    return max(1, round(share / (1 - share) * corpus_bytes / task_bytes))


def write(path: Path, rows: list[str], docs: Callable[[], Iterator[str]], times: int) -> int:
    """The text file of one dataset, `times` over: its rows, then its unlabeled documents
    (streamed each time); returns its bytes. No text: no file."""
    if not rows and next(docs(), None) is None:
        return 0
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(times):
            for text in itertools.chain(rows, docs()):
                n += f.write(text.strip() + "\n\n")
    return n

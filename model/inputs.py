"""The paper's input transformations (Figure 1, right), on token ids.

classification   [start; text; extract]
entailment       [start; premise; delim; hypothesis; extract]
similarity       [start; a; delim; b; extract] and [start; b; delim; a; extract]
multiple choice  [start; context; question; delim; answer_k; extract] for each k

Truncation never drops start, delim or extract: it trims the longest part first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

TaskType = Literal["classification", "entailment", "similarity", "multiple_choice"]
TASK_TYPES: tuple[str, ...] = ("classification", "entailment", "similarity", "multiple_choice")
Ids = list[int]
# Text fields of the canonical schema, per task type (multiple choice: context,
# question and the list `choices`).
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text",),
    "entailment": ("premise", "hypothesis"),
    "similarity": ("text_a", "text_b"),
    "multiple_choice": ("context", "question"),
}


def fit_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """New lengths with sum <= budget, trimming the longest part first.

    Equivalent to removing one token at a time from the currently longest part
    (ties: the later part first), computed in O(n log n).
    """
    if budget < 0:
        raise ValueError(f"budget {budget} < 0")
    if sum(lengths) <= budget:
        return list(lengths)
    # Largest cap c with sum(min(len, c)) <= budget, then hand out the remainder
    # one token each to the parts that were capped, earliest first.
    lo, hi = 0, max(lengths)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    out = [min(n, lo) for n in lengths]
    spare = budget - sum(out)
    for i, n in enumerate(lengths):
        if spare and n > lo:
            out[i] += 1
            spare -= 1
    return out


def _truncate(parts: Sequence[Ids], budget: int) -> list[Ids]:
    return [p[:n] for p, n in zip(parts, fit_lengths([len(p) for p in parts], budget), strict=True)]


def classification(text: Ids, sp: dict[str, int], max_len: int) -> list[Ids]:
    (text,) = _truncate([text], max_len - 2)
    return [[sp["start"], *text, sp["extract"]]]


def entailment(premise: Ids, hypothesis: Ids, sp: dict[str, int], max_len: int) -> list[Ids]:
    premise, hypothesis = _truncate([premise, hypothesis], max_len - 3)
    return [[sp["start"], *premise, sp["delim"], *hypothesis, sp["extract"]]]


def similarity(a: Ids, b: Ids, sp: dict[str, int], max_len: int) -> list[Ids]:
    a, b = _truncate([a, b], max_len - 3)
    s, d, e = sp["start"], sp["delim"], sp["extract"]
    return [[s, *a, d, *b, e], [s, *b, d, *a, e]]


def multiple_choice(
    context: Ids, question: Ids, answers: Sequence[Ids], sp: dict[str, int], max_len: int
) -> list[Ids]:
    s, d, e = sp["start"], sp["delim"], sp["extract"]
    seqs = []
    for answer in answers:
        c, q, a = _truncate([context, question, answer], max_len - 3)
        seqs.append([s, *c, *q, d, *a, e])
    return seqs


def transform(task_type: str, fields: dict[str, object], sp: dict[str, int], max_len: int):
    """Dispatch on task type; `fields` hold already-tokenized parts (lists of ids)."""
    if task_type == "classification":
        return classification(fields["text"], sp, max_len)
    if task_type == "entailment":
        return entailment(fields["premise"], fields["hypothesis"], sp, max_len)
    if task_type == "similarity":
        return similarity(fields["text_a"], fields["text_b"], sp, max_len)
    if task_type == "multiple_choice":
        return multiple_choice(
            fields["context"], fields["question"], fields["choices"], sp, max_len
        )
    raise ValueError(f"unknown task type {task_type!r}; expected one of {TASK_TYPES}")


def collate(examples: Sequence[list[Ids]], task_type: str, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of transformed examples.

    Returns input_ids and attention_mask of shape (B, T) for classification and
    entailment, (B, K, T) for similarity (K=2) and multiple choice (K = most
    choices in the batch; a missing choice is all padding with an all-zero mask).
    """
    k = max(len(ex) for ex in examples)
    t = max(len(seq) for ex in examples for seq in ex)
    ids = torch.full((len(examples), k, t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), k, t), dtype=torch.long)
    for i, ex in enumerate(examples):
        for j, seq in enumerate(ex):
            ids[i, j, : len(seq)] = torch.tensor(seq)
            mask[i, j, : len(seq)] = 1
    if task_type in ("classification", "entailment"):
        ids, mask = ids[:, 0], mask[:, 0]
    return {"input_ids": ids, "attention_mask": mask}

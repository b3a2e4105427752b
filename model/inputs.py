"""The paper's input transformations (Figure 1, right), on token ids.

classification   [start; text; extract]
entailment       [start; premise; delim; hypothesis; extract]
similarity       [start; a; delim; b; extract] and [start; b; delim; a; extract]
multiple choice  [start; context; question; delim; answer_k; extract] for each k

Truncation never drops start, delim or extract: it trims the longest part first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.schema import ONE_SEQUENCE, TEXT_FIELDS, check_task_type, is_regression

Ids = list[int]


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
    check_task_type(task_type)
    raise AssertionError(task_type)  # every task type is handled above


def encode_record(record: dict, task_type: str, tok, max_len: int, row: int = 0) -> list:
    """The task type's input transformation (above) of one canonical record.

    Each field is tokenized on its own without special tokens. The record needs its
    text fields (multiple choice: its choices; context or question may be empty or
    absent, e.g. ARC); labels are not needed. `row` names the record in the error.
    """
    from model.tokenizer import special_ids

    check_task_type(task_type)
    need = ("choices",) if task_type == "multiple_choice" else TEXT_FIELDS[task_type]
    missing = [k for k in need if not record.get(k)]
    if missing:
        raise ValueError(f"row {row}: missing field(s) {missing} for task type {task_type}")

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    fields = {k: ids(record.get(k) or "") for k in TEXT_FIELDS[task_type]}
    if task_type == "multiple_choice":
        fields["choices"] = [ids(c) for c in record["choices"]]
    return transform(task_type, fields, special_ids(tok), max_len)


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
    if task_type in ONE_SEQUENCE:
        ids, mask = ids[:, 0], mask[:, 0]
    return {"input_ids": ids, "attention_mask": mask}


# --- the same rules, written down for clients without this code (task.json, tokenizer.json)


def template(start: str, delim: str, extract: str) -> dict[str, str]:
    """tokenizers TemplateProcessing strings: one text, or two texts around the delimiter."""
    return {"single": f"{start} $A {extract}", "pair": f"{start} $A {delim} $B {extract}"}


def describe_output(task_type: str, num_labels: int) -> str:
    """task.json's `output`: what the `logits` output means."""
    if task_type == "multiple_choice":
        return "logits (batch, choices): one score per choice; prediction = argmax (choice index)"
    if is_regression(task_type, num_labels):
        return "logits (batch,): the predicted score (regression); prediction = the value"
    return "logits (batch, num_labels); prediction = labels[argmax] (the index if no labels)"


def describe(task_type: str, max_len: int, tokens: dict[str, str], ids: dict[str, int]) -> dict:
    """task.json's `inputs` section: how records become input_ids / attention_mask."""
    budget = {"classification": max_len - 2}.get(task_type, max_len - 3)
    parts = {
        "classification": [["text"]],
        "entailment": [["premise", "hypothesis"]],
        "similarity": [["text_a", "text_b"], ["text_b", "text_a"]],
        "multiple_choice": [["context", "question", "choices[k]"]],
    }[task_type]
    form = {
        "classification": "start text extract  (tokenizer template `single`)",
        "entailment": "start premise delim hypothesis extract  (template `pair`)",
        "similarity": "two sequences: start a delim b extract, start b delim a extract "
        "(template `pair` with (text_a, text_b), then (text_b, text_a))",
        "multiple_choice": "one sequence per choice k: start context question delim "
        "choices[k] extract  (template `pair` with A = context ids followed by question ids, "
        "B = choices[k] ids)",
    }[task_type]
    spec = {
        "fields": [
            *TEXT_FIELDS[task_type],
            *(["choices"] if task_type == "multiple_choice" else []),
        ],
        "tokenize": "each field on its own, no special tokens (add_special_tokens=False); "
        "a missing or null text field is the empty string",
        "sequence": form,
        "special_tokens": {k: {"token": tokens[k], "id": ids[k]} for k in tokens},
        "max_len": max_len,
        "truncation": {
            "budget": budget,
            "parts": parts,
            "rule": "per sequence, the parts' token lists are cut to lengths n_i with "
            "sum(n_i) <= budget, keeping each part's first n_i tokens: if they fit, "
            "nothing is cut; else c is the largest integer with sum(min(len_i, c)) <= budget, "
            "n_i = min(len_i, c), and the budget left over goes one token each to the parts "
            "longer than c, earliest part first (= drop one token at a time from the longest "
            "part, the later part on ties). Special tokens are never cut.",
        },
        "padding": {
            "side": "right",
            "pad_id": ids["pad"],
            "attention_mask": "1 on sequence tokens, 0 on padding",
        },
        "shape": "(batch_size, sequence_length)"
        if task_type in ONE_SEQUENCE
        else "(batch_size, sequences, sequence_length); sequence_length = the longest "
        "sequence in the batch",
    }
    if task_type == "similarity":
        spec["orderings"] = (
            "both orderings go in one row, as sequences 0 and 1; the model adds their "
            "final hidden states before the head, so the client passes both and combines nothing"
        )
    if task_type == "multiple_choice":
        spec["missing_choice"] = (
            "rows with fewer choices than the batch's most are padded with whole sequences "
            "of pad_id and an all-zero attention_mask; the model gives those choices the "
            "logit float32 min (-3.4028235e38): ignore them in argmax and softmax"
        )
    return spec

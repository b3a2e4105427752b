"""The canonical record schema: the one definition every stage and the runtime use.

Per task type (data/README.md shows the same table):
  classification   text, label (a class name from the dataset's `labels`)
  entailment       premise, hypothesis, label (a class name)
  similarity       text_a, text_b, score (a number: regression) or label (a class name)
  multiple_choice  context, question (one may be empty), choices (list of 2+ strings),
                   label (0-based index into choices)

Here: the task types, their fields, the label and regression rules, the record checks
(loaders and validation) and the logit that marks a missing choice. A record becomes
token ids in one function, model/inputs.py's encode_record (fine-tuning, export and the
ONNX runtime).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

TaskType = Literal["classification", "entailment", "similarity", "multiple_choice"]
TASK_TYPES: tuple[str, ...] = get_args(TaskType)
# Task types whose label is a class name, so a dataset must declare its `labels`.
NEEDS_LABELS: tuple[str, ...] = ("classification", "entailment")
# Task types whose record is one token sequence: (batch, length) model inputs.
ONE_SEQUENCE: tuple[str, ...] = ("classification", "entailment")
# Text fields per task type (multiple choice also has the list `choices`).
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text",),
    "entailment": ("premise", "hypothesis"),
    "similarity": ("text_a", "text_b"),
    "multiple_choice": ("context", "question"),
}
# Fields every record must have, non-empty (similarity adds `score` or `label`; multiple
# choice adds a non-empty context or question).
REQUIRED: dict[str, tuple[str, ...]] = {
    "classification": ("text", "label"),
    "entailment": ("premise", "hypothesis", "label"),
    "similarity": ("text_a", "text_b"),
    "multiple_choice": ("choices", "label"),
}
# The logit of a choice a row does not have (rows padded to the batch's most choices):
# float32's lowest value. Anything at or below it (-inf included) is a missing choice.
MISSING_CHOICE = float(np.finfo(np.float32).min)


def check_task_type(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; expected one of {TASK_TYPES}")


def num_labels(task_type: str, labels: Sequence[str] | None) -> int:
    """Width of the task head: one output per class; 1 for a score or a choice's score."""
    return len(labels) if labels and task_type != "multiple_choice" else 1


def is_regression(task_type: str, n_labels: int) -> bool:
    """A single-output head predicts a score, except multiple choice (a score per choice)."""
    return n_labels == 1 and task_type != "multiple_choice"


def required_fields(task_type: str, labels: Sequence[str] | None) -> tuple[str, ...]:
    need = REQUIRED[task_type]
    if task_type == "similarity":
        need = (*need, "label" if labels else "score")
    return need


def missing_choice(logits: np.ndarray) -> np.ndarray:
    """True where a logit marks a missing choice (see MISSING_CHOICE)."""
    return np.asarray(logits) <= MISSING_CHOICE


def label_of(record: dict, task_type: str, labels: Sequence[str] | None) -> float | int:
    """The training target of a canonical record: class index, choice index or score."""
    if task_type == "multiple_choice":
        return int(record["label"])
    if labels is None:  # regression
        return float(record["score"] if "score" in record else record["label"])
    return list(labels).index(str(record["label"]))


# --- checks ----------------------------------------------------------------------------


def _empty(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _kind(v) -> str:
    return type(v).__name__


def type_error(record: dict, task_type: str, labels: Sequence[str] | None) -> str | None:
    """The first field of the wrong type or shape, as a rule; None if all fit the schema.

    Absent or null fields are not type errors (the required-field rule covers them).
    """
    for k in TEXT_FIELDS[task_type]:
        v = record.get(k)
        if v is not None and not isinstance(v, str):
            return f"{k} is of type {_kind(v)}, not a string"
    label, score = record.get("label"), record.get("score")
    if task_type == "multiple_choice":
        ch = record.get("choices")
        if ch is not None and not isinstance(ch, list):
            return f"choices is of type {_kind(ch)}, not a list of strings"
        if ch is not None and (odd := [c for c in ch if not isinstance(c, str)]):
            return f"choices holds a {_kind(odd[0])} ({odd[0]!r}), not only strings"
        if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
            return f"label is of type {_kind(label)}, not an int (0-based index into choices)"
        return None
    if label is not None and not isinstance(label, str):
        return f"label is of type {_kind(label)}, not a string (a class name; quote it)"
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        return f"score is of type {_kind(score)}, not a number"
    return None


def check_record(record: dict, task_type: str, labels: Sequence[str] | None) -> str | None:
    """The first schema rule a record breaks, as a message; None if it is valid."""
    for key in required_fields(task_type, labels):
        if _empty(record.get(key)):
            return f"required field {key!r} is missing or empty"
    if bad := type_error(record, task_type, labels):
        return bad
    if labels and task_type != "multiple_choice" and record["label"] not in labels:
        return f"label {record['label']!r} not in the declared labels {list(labels)}"
    if task_type == "multiple_choice":
        if _empty(record.get("context")) and _empty(record.get("question")):
            return "context and question both empty"
        ch = record["choices"]
        if len(ch) < 2 or any(_empty(c) for c in ch):
            return "choices must be a list of >= 2 non-empty strings"
        if not 0 <= record["label"] < len(ch):
            return f"label {record['label']} is not an index into its {len(ch)} choices"
    return None

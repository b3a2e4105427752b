"""model/schema.py: the canonical record schema, its checks and record -> ids encoding."""

from __future__ import annotations

import numpy as np
import pytest

from model import schema
from model.inputs import encode_record
from model.schema import MISSING_CHOICE, check_record, type_error

MC = {"context": "c", "question": "q", "choices": ["a", "b"], "label": 1}


def test_one_task_type_list_and_fields_per_type():
    assert set(schema.TEXT_FIELDS) == set(schema.REQUIRED) == set(schema.TASK_TYPES)
    from genpt.params import DatasetConfig

    declared = DatasetConfig.model_fields["task_type"].annotation.__args__
    assert declared == schema.TASK_TYPES  # params.yaml accepts exactly these


@pytest.mark.parametrize(
    ("task", "labels", "regression"),
    [
        ("classification", ["a", "b"], False),
        ("similarity", None, True),
        ("similarity", ["0", "1"], False),
        ("multiple_choice", None, False),
    ],
)
def test_regression_rule(task, labels, regression):
    assert schema.is_regression(task, schema.num_labels(task, labels)) is regression


@pytest.mark.parametrize(
    ("record", "task", "labels", "rule"),
    [
        (MC, "multiple_choice", None, None),
        ({**MC, "choices": "ab"}, "multiple_choice", None, "choices is of type str"),
        ({**MC, "choices": ["a", 1]}, "multiple_choice", None, "choices holds a int"),
        ({**MC, "choices": ["a"]}, "multiple_choice", None, "choices must be a list of >= 2"),
        ({**MC, "label": "1"}, "multiple_choice", None, "label is of type str, not an int"),
        ({**MC, "label": 2}, "multiple_choice", None, "label 2 is not an index"),
        ({**MC, "context": "", "question": None}, "multiple_choice", None, "both empty"),
        ({"text": "t", "label": "a"}, "classification", ["a"], None),
        ({"text": "t", "label": 0}, "classification", ["0"], "label is of type int"),
        ({"text": ["t"], "label": "a"}, "classification", ["a"], "text is of type list"),
        ({"text": "t"}, "classification", ["a"], "required field 'label'"),
        ({"text": "t", "label": "b"}, "classification", ["a"], "label 'b' not in"),
        ({"text_a": "a", "text_b": "b", "score": 2}, "similarity", None, None),
        ({"text_a": "a", "text_b": "b", "score": "2"}, "similarity", None, "score is of type str"),
        ({"text_a": "a", "text_b": "b", "label": "1"}, "similarity", None, "field 'score'"),
    ],
)
def test_check_record(record, task, labels, rule):
    got = check_record(record, task, labels)
    assert got == rule if rule is None else rule in got


def test_absent_fields_are_not_type_errors():
    assert type_error({"text_a": None}, "similarity", None) is None


class Tok:
    """A stand-in tokenizer: one id per word, specials as model/tokenizer.py names them."""

    def __call__(self, text, add_special_tokens=False):
        assert add_special_tokens is False
        return {"input_ids": [100 + len(w) for w in text.split()]}

    def convert_tokens_to_ids(self, token):
        from model.tokenizer import DELIM, EXTRACT, PAD, START

        return {START: 1, DELIM: 2, EXTRACT: 3, PAD: 4}.get(token, 0)


def test_encode_record_missing_optional_fields_are_empty():
    """Fine-tuning and the ONNX runtime share this: an absent or null context or question
    is the empty string; a record without its required text is an error naming the row."""
    tok = Tok()
    from model.tokenizer import special_ids

    sp = special_ids(tok)
    s, d, e = sp["start"], sp["delim"], sp["extract"]
    full = encode_record({**MC, "context": "", "question": "ab c"}, "multiple_choice", tok, 32)
    absent = {"question": "ab c", "choices": ["a", "b"]}
    for rec in (absent, {**MC, "context": None, "question": "ab c"}):
        assert encode_record(rec, "multiple_choice", tok, 32) == full
    assert full == [[s, 102, 101, d, 101, e], [s, 102, 101, d, 101, e]]
    with pytest.raises(ValueError, match=r"row 7: missing field\(s\) \['hypothesis'\]"):
        encode_record({"premise": "p"}, "entailment", tok, 32, row=7)
    with pytest.raises(ValueError, match="unknown task type"):
        encode_record({"text": "t"}, "regression", tok, 32)


def test_missing_choice_sentinel():
    row = np.array([0.5, MISSING_CHOICE, -np.inf, -1e30], np.float32)
    assert schema.missing_choice(row).tolist() == [False, True, True, False]

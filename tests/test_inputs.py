import random

import pytest
import torch

from model import inputs

SP = {"start": 1, "delim": 2, "extract": 3, "pad": 4, "eot": 0}
S, D, E = 1, 2, 3


def test_classification_layout():
    assert inputs.classification([10, 11, 12], SP, 16) == [[S, 10, 11, 12, E]]


def test_entailment_layout():
    assert inputs.entailment([10, 11], [20], SP, 16) == [[S, 10, 11, D, 20, E]]


def test_similarity_both_orderings():
    assert inputs.similarity([10, 11], [20], SP, 16) == [
        [S, 10, 11, D, 20, E],
        [S, 20, D, 10, 11, E],
    ]


def test_multiple_choice_layout():
    seqs = inputs.multiple_choice([10, 11], [12], [[20], [21, 22]], SP, 16)
    assert seqs == [[S, 10, 11, 12, D, 20, E], [S, 10, 11, 12, D, 21, 22, E]]


def test_truncation_keeps_specials_and_trims_longest_first():
    premise, hyp = list(range(100, 120)), list(range(200, 205))
    (seq,) = inputs.entailment(premise, hyp, SP, 16)
    assert len(seq) == 16
    assert seq[0] == S and seq[-1] == E and seq.count(D) == 1
    # 13 content tokens: the short hypothesis (5) is kept whole, the premise gives way.
    assert seq == [S, *premise[:8], D, *hyp, E]
    (seq,) = inputs.classification(list(range(100, 200)), SP, 10)
    assert seq == [S, *range(100, 108), E]
    a, b = inputs.similarity(list(range(100, 110)), list(range(200, 210)), SP, 9)
    assert a == [S, 100, 101, 102, D, 200, 201, 202, E] and b == [
        S,
        200,
        201,
        202,
        D,
        100,
        101,
        102,
        E,
    ]
    for seq in inputs.multiple_choice(list(range(100, 300)), [7, 8], [[20], [21, 22]], SP, 12):
        assert len(seq) == 12 and seq[0] == S and seq[-1] == E and D in seq
        assert seq[-4:-1] in ([8, D, 20], [D, 21, 22])  # question and answer survive


def _naive(lengths, budget):
    out = list(lengths)
    while sum(out) > budget:
        m = max(out)
        i = max(j for j, n in enumerate(out) if n == m)  # ties: the later part first
        out[i] -= 1
    return out


def test_fit_lengths_matches_one_token_at_a_time():
    rng = random.Random(0)
    for _ in range(500):
        lengths = [rng.randint(0, 40) for _ in range(rng.randint(1, 4))]
        budget = rng.randint(0, 100)
        assert inputs.fit_lengths(lengths, budget) == _naive(lengths, budget)


def test_collate_shapes_and_missing_choices():
    b = inputs.collate([[[S, 5, E]], [[S, 5, 6, 7, E]]], "classification", pad_id=4)
    assert b["input_ids"].shape == (2, 5)
    assert b["input_ids"][0].tolist() == [S, 5, E, 4, 4]
    assert b["attention_mask"][0].tolist() == [1, 1, 1, 0, 0]
    mc = inputs.collate([[[S, E], [S, 5, E], [S, 6, E]], [[S, E], [S, 7, E]]], "multiple_choice", 4)
    assert mc["input_ids"].shape == (2, 3, 3)
    assert mc["attention_mask"][1, 2].sum() == 0  # the missing third choice
    assert torch.equal(mc["input_ids"][1, 2], torch.full((3,), 4))


def test_unknown_task_type():
    with pytest.raises(ValueError, match="unknown task type"):
        inputs.transform("summarization", {}, SP, 16)

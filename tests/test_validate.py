"""`genpt validate`: GX suites on the default data and on small hand-made sets."""

from __future__ import annotations

import json

import pytest

from genpt.ingest import leakage
from genpt.params import load_params
from tasks import validate


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def small_params(tmp_path, train, dev, task="entailment", labels=("yes", "no"), corpus=None):
    """Params over a one-file corpus and one dataset written from `train` and `dev` rows."""
    c = tmp_path / "corpus.txt"
    c.write_text(corpus or "The cat sat on the mat and looked at the rain all day long.\n")
    raw = {
        "paths": {"corpus": [str(c)], "artifacts": str(tmp_path / "art")},
        "datasets": {
            "d": {
                "task_type": task,
                "train": write_jsonl(tmp_path / "d" / "train.jsonl", train),
                "dev": write_jsonl(tmp_path / "d" / "dev.jsonl", dev),
                "labels": list(labels) if labels else None,
            }
        },
        "finetune_by_dataset": {"d": {}},  # every dataset has an entry (genpt.params)
    }
    from genpt.params import Params

    return Params(**raw)


def pair(i, label="yes"):
    return {"premise": f"premise number {i} is here", "hypothesis": f"hyp {i}", "label": label}


@pytest.mark.slow
def test_default_data_passes(tmp_path):
    arc = "data/finetune/arc"  # in data/, not in the default datasets: validated here
    arc = f"{{task_type: multiple_choice, train: {arc}/train.jsonl, dev: {arc}/dev.jsonl}}"
    s = validate.run(
        load_params(
            "params.yaml",
            [f"paths.artifacts={tmp_path}", f"datasets.arc={arc}", "finetune_by_dataset.arc={}"],
        )
    )
    assert s["success"] and s["failures"] == []
    assert s["corpus"]["files"] == 5 and s["corpus"]["duplicate_docs"] == 0
    assert s["datasets"]["authors"]["train"]["class_balance"]["austen"] > 0.2
    counts = s["datasets"]["arc"]["dev"]["choice_counts"]  # ARC has 3 to 5 choices
    assert set(counts) <= {"3", "4", "5"} and counts["4"] > 0.9
    assert s["datasets"]["cloze"]["dev"]["choice_counts"] == {"2": 1.0}
    assert len(s["datasets"]["snli"]["train"]["sha256"]) == 64  # stages see data edits
    assert s["datasets"]["stsb"]["dev"]["leak_train_normalized"] == 0
    out = tmp_path / "validate"
    assert json.loads((out / "summary.json").read_text())["success"]
    assert (out / "docs" / "index.html").exists()
    assert list((out / "docs" / "validations").rglob("*.html"))


def test_clean_small_set_passes_and_reports(tmp_path):
    p = small_params(tmp_path, [pair(i) for i in range(6)] + [pair(9, "no")], [pair(7)])
    s = validate.run(p)
    assert s["success"]
    assert s["datasets"]["d"]["train"]["class_balance"] == {"no": 0.1429, "yes": 0.8571}
    assert s["datasets"]["d"]["dev"]["leak_train_exact"] == 0


def test_train_dev_leak_named(tmp_path):
    near = {**pair(3), "premise": "Premise number 3, is  HERE!"}  # normalized duplicate
    p = small_params(tmp_path, [pair(i) for i in range(5)], [pair(8), pair(1), near])
    with pytest.raises(validate.DataValidationError) as e:
        validate.run(p)
    msg = str(e.value)
    assert "d/dev.jsonl" in msg and "in_train" in msg
    assert "2 of 3 rows" in msg and "row 2" in msg and "row 3" in msg
    s = json.loads((tmp_path / "art" / "validate" / "summary.json").read_text())
    assert not s["success"] and s["datasets"]["d"]["dev"]["leak_train_exact"] == 1
    assert s["datasets"]["d"]["dev"]["leak_train_normalized"] == 2


def test_eval_text_found_in_corpus(tmp_path):
    leaked = "the old lighthouse keeper counted every ship that passed the rocky northern cape"
    corpus = "Chapter one.\n\nThe old lighthouse keeper counted every ship that passed\n"
    corpus += "the rocky northern cape, night after night.\n"
    dev = [{"premise": leaked, "hypothesis": "a man counted ships", "label": "yes"}]
    p = small_params(tmp_path, [pair(1)], dev, corpus=corpus)
    with pytest.raises(validate.DataValidationError, match=r"dev.jsonl: .*in_corpus.*row 1"):
        validate.run(p)


def corpus_index(corpus: list[str], texts: list[str], n: int) -> leakage.EvalNgrams:
    """The n-grams of `texts`, with those found in the `corpus` documents marked."""
    idx = leakage.EvalNgrams(texts, n)
    for doc in corpus:
        idx.mark(idx.scan(doc))
    return idx


def test_multiple_choice_choice_found_in_corpus_is_flagged():
    """An answer choice copied from the corpus leaks the answer: flagged like a text field."""
    corpus = ["then the old keeper climbed the stairs and lit the great lamp"]
    rows = [
        {"context": "a", "question": "b", "choices": ["no", "the keeper climbed the stairs"]},
        {"context": "a", "question": "b", "choices": ["no", "he went home to sleep"]},
        {"context": "a", "question": "b", "choices": ["he climbed the stairs and lit it"]},
    ]
    idx = corpus_index(corpus, leakage.eval_texts(rows, "multiple_choice"), 4)
    _, in_corpus, stats = leakage.leak_flags(rows, "multiple_choice", (set(), set()), idx, 0.8)
    assert in_corpus == [False, False, False]  # "the keeper climbed": not a corpus 4-gram
    rows[0]["choices"][1] = "the old keeper climbed the stairs"
    idx = corpus_index(corpus, leakage.eval_texts(rows, "multiple_choice"), 4)
    _, in_corpus, stats = leakage.leak_flags(rows, "multiple_choice", (set(), set()), idx, 0.8)
    assert in_corpus == [True, False, False] and stats["leak_corpus"] == 1


def test_ngram_index_shares():
    texts = ["Two, three FOUR five six", "two three four nine", "short text", ""]
    idx = corpus_index(["one two three four five six seven eight nine ten", "x"], texts, 4)
    s = idx.shares(texts)
    assert s[0] == 1.0 and s[1] == 0.0
    assert s[2] != s[2] and s[3] != s[3]  # nan: under n words
    assert list(idx.shares(["six seven eight nine ten"])) == [0.0]  # not indexed: not found


@pytest.mark.slow
def test_cli_exit_code_and_message(tmp_path):
    import subprocess
    import sys

    p = small_params(tmp_path, [pair(1)], [{"premise": "x", "hypothesis": "y", "label": "maybe"}])
    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps(json.loads(p.model_dump_json(by_alias=True))))
    r = subprocess.run(
        [sys.executable, "-m", "genpt.cli", "validate", "--params", str(params_file)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "dev.jsonl" in r.stderr and "expect_column_values_to_be_in_set" in r.stderr
    assert "row 1 ('maybe')" in r.stderr

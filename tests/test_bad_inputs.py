"""The bad-input catalog: each bad file gets a clear error naming file, row and rule (or is
handled), and no partial output is left behind."""

from __future__ import annotations

import json

import pytest

from genpt.ingest import corpus, tokens
from genpt.ingest.loaders import DatasetError, load_split
from genpt.params import DatasetConfig, Params
from tasks import tokenize, validate


def params_for(tmp_path, corpus_files, datasets=None) -> Params:
    return Params(
        paths={"corpus": [str(f) for f in corpus_files], "artifacts": str(tmp_path / "art")},
        tokenizer={"vocab_size": 300},
        datasets=datasets or {},
    )


def no_partial_output(tmp_path, stage_dirs=("tokenizer", "tokens")) -> None:
    art = tmp_path / "art"
    assert not list(art.glob(".*")) if art.exists() else True  # no temp dirs
    for d in stage_dirs:
        assert not (art / d).exists()


def failed_validation(p: Params, *patterns: str) -> str:
    """Run validate expecting failure; check the message and the complete failure report."""
    with pytest.raises(validate.DataValidationError) as e:
        validate.run(p)
    msg = str(e.value)
    for pat in patterns:
        assert pat in msg, f"{pat!r} not in {msg}"
    art = p.artifacts()
    summary = json.loads((art / "validate" / "summary.json").read_text())
    assert summary["success"] is False and summary["failures"]
    assert not list(art.glob(".*"))  # the report is complete or absent, never half-written
    return msg


def good_corpus(tmp_path):
    f = tmp_path / "good.txt"
    f.write_text("It was a bright cold day in April, and the clocks were striking.\n" * 20)
    return f


# --- corpus ----------------------------------------------------------------------------------


def test_empty_corpus(tmp_path):
    with pytest.raises(corpus.CorpusError, match="no files match"):
        tokenize.run(params_for(tmp_path, [tmp_path / "none/*.txt"]))
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n")
    p = params_for(tmp_path, [good_corpus(tmp_path), empty])
    with pytest.raises(corpus.CorpusError, match=r"empty.txt: empty document"):
        tokenize.run(p)
    no_partial_output(tmp_path)
    failed_validation(p, "corpus: expect_column_values_to_be_between(column='chars'", "empty.txt")


def test_non_utf8_bytes(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("first line\nna\xefve caf\xe9\n".encode("latin-1"))
    p = params_for(tmp_path, [good_corpus(tmp_path), bad])
    with pytest.raises(corpus.CorpusError, match=r"latin1.txt: line 2, byte 13: not valid UTF-8"):
        tokenize.run(p)
    no_partial_output(tmp_path)
    failed_validation(p, "utf8_error", "latin1.txt", "line 2, byte 13")


def test_bom_and_crlf_are_handled(tmp_path):
    f = tmp_path / "windows.txt"
    f.write_bytes(b"\xef\xbb\xbf" + b"Call me Ishmael. Some years ago.\r\n" * 30)
    assert corpus.read_document(f) == "Call me Ishmael. Some years ago.\n" * 30
    p = params_for(tmp_path, [f])
    assert validate.run(p)["success"]
    tokenize.run(p)
    assert (tmp_path / "art" / "tokens" / "manifest.json").exists()


def test_nul_and_control_characters(tmp_path):
    nul = tmp_path / "nul.txt"
    nul.write_text("ok line\nanother\nbin\x00ary\n")
    p = params_for(tmp_path, [good_corpus(tmp_path), nul])
    with pytest.raises(corpus.CorpusError, match=r"nul.txt: line 3: NUL character"):
        tokenize.run(p)
    no_partial_output(tmp_path)
    failed_validation(p, "column='nul'", "nul.txt", "at line 3")
    # a control character before the NUL: the NUL's own line is named
    late = tmp_path / "late_nul.txt"
    late.write_text("\x1b[1mbold\x1b[0m heading\nplain\nbin\x00ary\n")
    with pytest.raises(corpus.CorpusError, match=r"late_nul.txt: line 3: NUL character"):
        tokenize.run(params_for(tmp_path, [good_corpus(tmp_path), late]))
    msg = failed_validation(params_for(tmp_path, [good_corpus(tmp_path), late]), "column='nul'")
    assert "late_nul.txt (1 at line 3)" in msg.split("column='nul'")[1].split("\n")[0], msg
    ctrl = tmp_path / "ansi.txt"
    ctrl.write_text("plain text\n" * 10 + "\x1b[31mred\x1b[0m terminal dump\n")
    failed_validation(
        params_for(tmp_path, [ctrl]), "column='control_rate'", "ansi.txt", "at line 11"
    )


def test_one_50mb_line(tmp_path):
    big = tmp_path / "one_line.txt"
    big.write_text("a" * 50_000_000)
    failed_validation(
        params_for(tmp_path, [big]), "column='longest_line'", "one_line.txt", "at line 1"
    )
    pieces = tokens.chunks(big.read_text())  # the encoder still gets bounded pieces
    assert len(pieces) == -(-50_000_000 // tokens.ENCODE_CHUNK_CHARS)
    assert max(map(len, pieces)) == tokens.ENCODE_CHUNK_CHARS


# --- labelled data ---------------------------------------------------------------------------


def dataset(tmp_path, train_rows, dev_rows, task="entailment", labels=("yes", "no"), test=None):
    def write(name, rows):
        path = tmp_path / "ds" / name
        path.parent.mkdir(exist_ok=True)
        if isinstance(rows, str):
            path.write_text(rows)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    return DatasetConfig(
        task_type=task,
        train=write("train.jsonl", train_rows),
        dev=write(dev_rows[0], dev_rows[1])
        if isinstance(dev_rows, tuple)
        else write("dev.jsonl", dev_rows),
        test=write("test.jsonl", test) if test else None,
        labels=list(labels) if labels else None,
    )


def row(i, label="yes"):
    return {"premise": f"a premise sentence {i}", "hypothesis": f"hypothesis {i}", "label": label}


def test_missing_column(tmp_path):
    dev = [{"premise": "only a premise", "label": "yes"}]
    cfg = dataset(tmp_path, [row(1)], dev)
    with pytest.raises(DatasetError, match=r"dev.jsonl: row 1: required field 'hypothesis'"):
        load_split(cfg, "dev")
    p = params_for(tmp_path, [good_corpus(tmp_path)], {"d": cfg})
    failed_validation(p, "dev.jsonl: expect_table_columns_to_match_set", "hypothesis")


def test_unknown_label(tmp_path):
    cfg = dataset(tmp_path, [row(1), row(2, "perhaps")], [row(3)])
    with pytest.raises(DatasetError, match=r"train.jsonl: row 2: label 'perhaps' not in"):
        load_split(cfg, "train")


def test_ragged_choices(tmp_path):
    rows = [
        {"context": "c", "question": "q1", "choices": ["a", "b", "c", "d"], "label": 0},
        {"context": "c", "question": "q2", "choices": ["only one"], "label": 0},
        {"context": "c", "question": "q3", "choices": ["a", "", "c"], "label": 2},
    ]
    cfg = dataset(tmp_path, rows[:1], rows, task="multiple_choice", labels=None)
    with pytest.raises(DatasetError, match=r"dev.jsonl: row 2: choices must be a list of >= 2"):
        load_split(cfg, "dev")
    p = params_for(tmp_path, [good_corpus(tmp_path)], {"mc": cfg})
    failed_validation(p, "column='n_choices'", "row 2 (1)", "column='empty_choices'", "row 3")


def test_truncated_jsonl_line(tmp_path):
    text = json.dumps(row(1)) + "\n" + json.dumps(row(2))[:25]
    cfg = dataset(tmp_path, [row(1)], ("dev.jsonl", text))
    with pytest.raises(DatasetError, match=r"dev.jsonl: line 2: not valid JSON .*truncated"):
        load_split(cfg, "dev")


def test_header_only_csv(tmp_path):
    cfg = dataset(tmp_path, [row(1)], ("dev.csv", "premise,hypothesis,label\n"))
    with pytest.raises(DatasetError, match=r"dev.csv: no data rows \(header only\?\)"):
        load_split(cfg, "dev")
    p = params_for(tmp_path, [good_corpus(tmp_path)], {"d": cfg})
    failed_validation(p, "d/dev: ", "dev.csv: no data rows")


def test_train_test_overlap(tmp_path):
    train = [row(i) for i in range(10)]
    cfg = dataset(tmp_path, train, [row(20)], test=[row(21), row(4), row(22)])
    p = params_for(tmp_path, [good_corpus(tmp_path)], {"d": cfg})
    failed_validation(p, "test.jsonl: expect_column_values_to_be_in_set(column='in_train'",
                      "1 of 3 rows", "row 2")  # fmt: skip


def mc(i, **kw):
    return {"context": f"context {i}", "question": "q", "choices": ["a", "b"], "label": 0, **kw}


@pytest.mark.parametrize(
    ("task", "bad_rows", "row_and_rule"),
    [
        # multiple choice: choices a string (each character would become a choice)
        ("multiple_choice", [mc(1, choices="ab"), mc(2, choices="cd")],
         "row 1 ('choices is of type str, not a list of strings')"),
        ("multiple_choice", [mc(1, choices=["a", 2])],
         "row 1 ('choices holds a int (2), not only strings')"),
        ("multiple_choice", [mc(1, label="1")],
         "row 1 ('label is of type str, not an int (0-based index into choices)')"),
        # wrong types: a class label given as a number; a text that is not a string
        ("entailment", [{**row(1), "label": 1}],
         "row 1 ('label is of type int, not a string (a class name; quote it)')"),
        ("entailment", [{**row(1), "hypothesis": 5}, {**row(2), "hypothesis": 6}],
         "row 2 ('hypothesis is of type int, not a string')"),
        ("similarity", [{"text_a": "a b", "text_b": "c d", "score": "high"}],
         "row 1 ('score is of type str, not a number')"),
    ],
)  # fmt: skip
def test_malformed_record_shapes(tmp_path, task, bad_rows, row_and_rule):
    """Each malformed shape fails validation naming file, row and rule (column
    schema_error, model/schema.py), and fails loading for fine-tuning the same way."""
    good = [mc(0)] if task == "multiple_choice" else [row(0)]
    if task == "similarity":
        good = [{"text_a": "x y", "text_b": "y z", "score": 1.5}]
    labels = ("yes", "no") if task == "entailment" else None
    cfg = dataset(tmp_path, good, bad_rows, task=task, labels=labels)
    p = params_for(tmp_path, [good_corpus(tmp_path)], {"d": cfg})
    failed_validation(p, "ds/dev.jsonl: expect_column_values_to_be_null(column='schema_error')",
                      row_and_rule)  # fmt: skip
    rule = row_and_rule.split(" ('", 1)[1].removesuffix("')")  # this case's own rule
    with pytest.raises(DatasetError, match=r"dev.jsonl: row \d: ") as e:
        load_split(cfg, "dev")
    assert str(e.value).endswith(f": {rule}"), e.value


def test_missing_field_named_with_its_row(tmp_path):
    """A field missing from one row (present in others): file, row and the not-null rule."""
    cfg = dataset(tmp_path, [row(0)], [row(1), {"premise": "a premise", "label": "no"}])
    p = params_for(tmp_path, [good_corpus(tmp_path)], {"d": cfg})
    failed_validation(p, "ds/dev.jsonl: expect_column_values_to_not_be_null(column='hypothesis')",
                      "1 of 2 rows", "row 2 (missing)")  # fmt: skip
    with pytest.raises(DatasetError, match=r"dev.jsonl: row 2: required field 'hypothesis'"):
        load_split(cfg, "dev")

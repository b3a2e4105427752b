"""Adapters on the real shared files (row counts as ../shared/data/README.md states them),
the canonical loader on every format, and record checks."""

from __future__ import annotations

import json

import pytest

from genpt.ingest.loaders import ADAPTERS, DatasetError, check_records, load_canonical, load_split
from genpt.params import DatasetConfig

# adapter, file under shared/data, rows, skipped rows, a check on the first record
CASES = [
    ("glue_sst2", "glue/SST-2/train.tsv", 67349, 0, {"label": "0"}),
    ("glue_sst2", "glue/SST-2/dev.tsv", 872, 0, {"label": "1"}),
    ("glue_cola", "glue/CoLA/raw/in_domain_train.tsv", 8551, 0, {"label": "1"}),
    ("glue_cola", "glue/CoLA/raw/out_of_domain_dev.tsv", 516, 0, {}),
    ("glue_rte", "glue/RTE/train.tsv", 2490, 0, {"label": "not_entailment"}),
    ("glue_rte", "glue/RTE/dev.tsv", 277, 0, {}),
    ("glue_qnli", "glue/QNLI/dev.tsv", 5463, 0, {"label": "entailment"}),
    ("glue_stsb", "glue/STS-B/train.tsv", 5749, 0, {"score": 5.0}),
    ("glue_stsb", "glue/STS-B/dev.tsv", 1500, 0, {}),
    ("msrp", "glue/MRPC/msr_paraphrase_train.txt", 4076, 0, {"label": "1"}),
    ("msrp", "glue/MRPC/msr_paraphrase_test.txt", 1725, 0, {}),
    ("qqp", "qqp_subset/new_dev.tsv", 23496, 1, {"label": "0"}),
    ("snli", "snli_subset/snli_1.0_dev.jsonl", 1289 - 16, 16, {"label": "neutral"}),
    ("snli", "snli_subset/snli_1.0_test.jsonl", 1277 - 23, 23, {}),
    ("sick_entailment", "sick2014/SICK_train.txt", 4500, 0, {"label": "neutral"}),
    ("sick_entailment", "sick2014/SICK_test_annotated.txt", 4927, 0, {}),
    ("sick_relatedness", "sick2014/SICK_trial.txt", 500, 0, {}),
    (
        "story_cloze",
        "story_cloze/cloze_test_val__spring2016 - cloze_test_ALL_val.csv",
        1871,
        0,
        {"label": 0},
    ),
    ("race", "race/RACE/dev", 4887, 0, {}),
    ("arc", "arc/ARC-Easy/ARC-Easy-Train.jsonl", 2251, 0, {"label": 1}),
    ("arc", "arc/ARC-Challenge/ARC-Challenge-Test.jsonl", 1172, 0, {}),
    ("openbookqa", "openbookqa/Main/train.tsv", 4957, 0, {"label": 3}),
    ("openbookqa", "openbookqa/Main/test.tsv", 500, 0, {}),
]


@pytest.mark.parametrize(("adapter", "path", "rows", "skipped", "first"), CASES)
def test_adapter_on_shared_file(shared_data, adapter, path, rows, skipped, first):
    records = ADAPTERS[adapter](str(shared_data / path))
    assert len(records) == rows
    assert records.skipped == skipped
    assert {k: records[0][k] for k in first} == first


def test_every_adapter_is_tested():
    assert {c[0] for c in CASES} | {"canonical"} == set(ADAPTERS)


def test_label_distributions_match_readme(shared_data):
    labels = [r["label"] for r in ADAPTERS["glue_rte"](str(shared_data / "glue/RTE/train.tsv"))]
    assert labels.count("entailment") == 1249 and labels.count("not_entailment") == 1241
    race = ADAPTERS["race"](str(shared_data / "race/RACE/dev/middle"))
    assert len(race) == 1436 and sum(r["label"] == 0 for r in race) == 311  # answers "A"
    sick = ADAPTERS["sick_entailment"](str(shared_data / "sick2014/SICK_train.txt"))
    assert sum(r["label"] == "contradiction" for r in sick) == 665


def test_choice_shapes(shared_data):
    arc = ADAPTERS["arc"](str(shared_data / "arc/ARC-Easy/ARC-Easy-Train.jsonl"))
    assert {len(r["choices"]) for r in arc} >= {3, 4, 5}
    assert all(0 <= r["label"] < len(r["choices"]) for r in arc)
    obqa = ADAPTERS["openbookqa"](str(shared_data / "openbookqa/Main/train.tsv"))
    assert all(len(r["choices"]) == 4 for r in obqa)
    cloze = ADAPTERS["story_cloze"](
        str(shared_data / "story_cloze/cloze_test_val__spring2016 - cloze_test_ALL_val.csv")
    )
    assert sum(r["label"] == 0 for r in cloze) == 962  # AnswerRightEnding 1
    assert cloze[0]["context"].count(".") >= 4


ROWS = [{"premise": "a cat sat", "hypothesis": "an animal sat", "label": "entailment"}] * 3


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet"])
def test_canonical_formats(tmp_path, fmt):
    import pandas as pd

    path = tmp_path / f"d.{fmt}"
    df = pd.DataFrame(ROWS)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    assert load_canonical(str(path)) == ROWS


def test_glob_of_files(tmp_path):
    for i in range(3):
        (tmp_path / f"part{i}.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    assert len(load_canonical(str(tmp_path / "part*.jsonl"))) == 3


def test_default_datasets_load():
    from genpt.params import load_params

    p = load_params("params.yaml")
    assert {"authors", "snli", "stsb", "cloze"} <= set(p.datasets)
    kinds = {d.task_type for d in p.datasets.values()}
    assert kinds == {"classification", "entailment", "similarity", "multiple_choice"}
    for d in p.datasets.values():
        assert len(load_split(d, "train")) >= 800 and len(load_split(d, "dev")) >= 250


def test_check_records_rules():
    cfg = DatasetConfig(task_type="multiple_choice", train="t", dev="d")
    good = {"context": "c", "question": "", "choices": ["a", "b"], "label": 1}
    check_records([good], cfg, "f.jsonl")
    with pytest.raises(DatasetError, match=r"f.jsonl: row 2: label 2 is not an index"):
        check_records([good, {**good, "label": 2}], cfg, "f.jsonl")
    with pytest.raises(DatasetError, match="context and question both empty"):
        check_records([{**good, "context": " "}], cfg, "f.jsonl")


def test_unknown_adapter():
    cfg = DatasetConfig(task_type="similarity", adapter="nope", train="t", dev="d")
    with pytest.raises(DatasetError, match="unknown adapter 'nope'"):
        load_split(cfg, "train")


# --- s3:// through a real SeaweedFS S3 gateway --------------------------------------------


@pytest.fixture
def seaweed(s3_env):
    """A client of the shared SeaweedFS server (conftest `weed`), with a bucket `data`."""
    from genpt.stack.storage import s3_client

    client = s3_client()
    if "data" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="data")
    return client


@pytest.mark.slow
def test_s3_uris(seaweed, shared_data):
    """Canonical JSONL and an adapter format (GLUE TSV), read from s3:// via datasets/s3fs."""
    body = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    seaweed.put_object(Bucket="data", Key="canon/train.jsonl", Body=body)
    rte = (shared_data / "glue/RTE/dev.tsv").read_bytes()
    seaweed.put_object(Bucket="data", Key="glue/RTE/dev.tsv", Body=rte)
    assert load_canonical("s3://data/canon/train.jsonl") == ROWS
    records = ADAPTERS["glue_rte"]("s3://data/glue/RTE/dev.tsv")
    assert len(records) == 277 and records[0]["label"] == "not_entailment"
    cfg = DatasetConfig(
        task_type="entailment",
        train="s3://data/canon/train.jsonl",
        dev="s3://data/glue/RTE/dev.tsv",
        labels=["entailment", "neutral"],
    )
    assert load_split(cfg, "train") == ROWS
    with pytest.raises(DatasetError, match="s3://data/nope.jsonl"):
        load_canonical("s3://data/nope.jsonl")


def test_holdout_takes_dev_rows_from_the_train_file(tmp_path):
    rows = [{"text": f"row {i}", "label": "a" if i % 2 else "b"} for i in range(20)]
    (tmp_path / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DatasetConfig(
        task_type="classification", train=str(tmp_path / "all.jsonl"), holdout=5, labels=["a", "b"]
    )
    train, dev = load_split(cfg, "train"), load_split(cfg, "dev")
    assert len(train) == 15 and len(dev) == 5
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in dev)
    assert [r["text"] for r in load_split(cfg, "dev")] == [r["text"] for r in dev]  # fixed seed
    with pytest.raises(ValueError, match="exactly one of `dev`"):
        DatasetConfig(task_type="classification", train="x", dev="y", holdout=5, labels=["a"])

"""Unlabeled in-domain text (stage `unlabeled`, genpt/ingest/unlabeled.py): a dataset's
label pool joins the corpus as text without labels, never a held-out, dev or test row."""

from __future__ import annotations

import json

from genpt import artifacts
from genpt.arms import held_out
from genpt.ingest.splits import carve
from genpt.ingest.token_inputs import inputs
from genpt.params import load_params
from tasks import unlabeled
from tests.conftest import ROOT


def rows(prefix: str, n: int) -> list[dict]:
    return [{"text": f"{prefix} sentence number {i} with its own words {prefix}{i}x",
             "label": "labelalpha" if i % 2 else "labelbeta"} for i in range(n)]  # fmt: skip


def workspace(tmp_path, *extra: str):
    train, dev, test = rows("train", 40), rows("dev", 5), rows("test", 5)
    _, report = carve(train, 10, 1)  # study.report_rows and report_seed, as below
    i, j = [k for k, r in enumerate(train) if r not in report][:2]  # two pool rows
    train[i]["text"], train[j]["text"] = dev[2]["text"], test[3]["text"].upper()  # planted
    for name, rs in (("train", train), ("dev", dev), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    (tmp_path / "domain.txt").write_text("Declared domain prose, unlabeled.\n")
    (tmp_path / "corpus.txt").write_text("General prose. " * 200)
    ds = (f"{{task_type: classification, train: {tmp_path}/train.jsonl, dev: {tmp_path}/dev."
          f"jsonl, test: {tmp_path}/test.jsonl, labels: [labelalpha, labelbeta], "
          f"unlabeled: [{tmp_path}/domain.txt]}}")  # fmt: skip
    return load_params(ROOT / "params.yaml", [
        f"paths.artifacts={tmp_path / 'artifacts'}", f"datasets={{t: {ds}}}",
        "finetune_by_dataset={t: {}}", f"paths.corpus=[{tmp_path}/corpus.txt]",
        f"corpus.root={tmp_path}", "study.report_rows=10", "study.report_seed=1",
        "corpus.in_domain=true", *extra,
    ])  # fmt: skip


def test_the_pool_joins_the_corpus_without_labels_held_out_dev_or_test_rows(tmp_path):
    p = workspace(tmp_path)
    m = unlabeled.run(p)
    text = (artifacts.unlabeled(p) / "t.txt").read_text()
    pool, report, _ = held_out(p, "t")
    sealed = [r["text"] for r in report] + [rows("dev", 5)[2]["text"], rows("test", 5)[3]["text"]]
    assert not [t for t in sealed if t.lower() in text.lower()]  # no held-out, dev, test row
    assert "labelalpha" not in text and "labelbeta" not in text  # no label
    kept = [r["text"] for r in pool if r["text"].lower() not in [t.lower() for t in sealed]]
    assert len(kept) == 28 and all(t in text for t in kept)  # every other pool row
    assert "Declared domain prose, unlabeled." in text  # the dataset's declared text
    assert m["datasets"]["t"] == {"rows": 28, "left_out": 2, "bytes": len(text.encode())}
    assert m["repeats"] == 1
    files = [f["path"] for f in inputs(p)["files"]]
    assert files[-1] == str(artifacts.unlabeled(p) / "t.txt")  # tokenize reads it


def test_the_share_repeats_the_in_domain_text(tmp_path):
    p = workspace(tmp_path, "corpus.in_domain_share=0.5")
    (tmp_path / "artifacts" / "validate").mkdir(parents=True)
    corpus_bytes = 30_000  # validate's count of the corpus's bytes
    artifacts.validate_summary(p).write_text(json.dumps({"corpus": {"bytes": corpus_bytes}}))
    m = unlabeled.run(p)
    assert m["repeats"] > 1 and abs(m["share"] - 0.5) < 0.05, m
    text = (artifacts.unlabeled(p) / "t.txt").read_text()
    assert text.count("Declared domain prose") == m["repeats"]


def test_off_by_default_writes_no_text(tmp_path):
    p = workspace(tmp_path, "corpus.in_domain=false")
    assert unlabeled.run(p)["datasets"] == {}
    assert not list(artifacts.unlabeled(p).glob("*.txt"))

"""The ablation study (tasks/study.py, tasks/finetune.py, genpt/arms.py): a tiny end-to-end
study and report, the protocol (held-out rows read once, at the end; dev never), the same
lrs and early stopping for every arm, the product as the `full` arm's first model,
zero-shot multiple choice; and the dvc.yaml matrix's incrementality."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genpt import arms
from genpt.params import load_params
from model.finetune import encode, predict
from model.task_model import TaskModel
from model.tokenizer import load_tokenizer, special_ids
from tasks import finetune, pretrain, report, study
from tests.conftest import ROOT, copy_tokens


@pytest.fixture(scope="module")
def tiny_study(tokens, tmp_path_factory):
    """30 pre-training steps, then the product (`full`, stage finetune) and every other arm
    on `authors` and `arc` over 2 seeds."""
    art = tmp_path_factory.mktemp("study") / "artifacts"
    copy_tokens(tokens, art)
    sets = [
        f"paths.artifacts={art}",
        "model.preset=tiny",
        "model.n_layer=null",
        "model.n_embd=null",
        "tokenizer.vocab_size=1024",
        "pretrain.steps=30",
        "pretrain.batch_size=8",
        "pretrain.eval_every=30",
        "pretrain.eval_batches=2",
        "pretrain.warmup_steps=5",
        "finetune.max_train_examples=40",
        "finetune.epochs=4",
        "finetune.patience=1",
        "study.seeds=[1, 2]",
        "study.lrs=[1.0e-3, 3.0e-3]",
        "study.report_rows=60",
        "study.curve=[16]",  # the label-efficiency curve: 16 labels beside the own 40
        "study.arms={no_aux: {init: pretrained, lm_coef: 0.0}, scratch: {init: scratch}}",
        "datasets.arc={task_type: multiple_choice, train: data/finetune/arc/train.jsonl, "
        "dev: data/finetune/arc/dev.jsonl}",  # in data/, not a default: 3 to 5 choices
        "finetune_by_dataset.arc={}",  # both: the finetune section's 40 rows
        "finetune_by_dataset.authors={}",
    ]
    p = load_params(ROOT / "params.yaml", sets)
    datasets = {  # dev is never read: a missing file shows it
        name: p.datasets[name].model_copy(update={"dev": str(art.parent / "no-such-dev.jsonl")})
        for name in ("authors", "arc")
    }
    p = p.model_copy(update={"datasets": datasets})
    pretrain.run(p)
    out = {}
    for n in p.datasets:
        finetune.run(p, n)  # the product: the `full` arm, its first seed's model saved
        out[n, "full"] = json.loads(p.artifacts("study", n, "full.json").read_text())
        out |= {(n, a): study.run(p, n, a) for a in p.study.arms}
    return p, out, report.run(p)


def test_every_arm_runs_every_seed_on_the_same_splits(tiny_study):
    p, out, _ = tiny_study
    full, scratch = out["authors", "full"], out["authors", "scratch"]
    assert [r["seed"] for r in full["runs"]] == [1, 2]
    assert full["examples"] == scratch["examples"] == {
        "fit": 32, "tune": 8, "report": 60, "pool": 1272 - 60, "dropped": {}
    }  # fmt: skip
    assert full["gold"] == scratch["gold"] and len(full["gold"]) == 60
    assert full["init"] == "pretrained" and full["lm_coef"] == 0.5
    assert out["authors", "no_aux"]["lm_coef"] == 0.0 and scratch["init"] == "scratch"
    for r in full["runs"]:
        assert 1 <= r["best_epoch"] <= r["epochs"] <= 4 and 0 <= r["report"]["accuracy"] <= 1
        assert len(r["pred"]) == 60 and len(r["tune_curve"]) == r["epochs"]
        # early stopping: a run ends at the cap or 1 epoch (the patience) after its best
        assert r["epochs"] == 4 or r["epochs"] == r["best_epoch"] + 1
        assert r["steps"] == r["epochs"] * 2  # 32 fit rows, batch 16


def test_every_arm_searches_the_same_lrs_on_the_tune_split(tiny_study):
    _, out, rep = tiny_study
    for arm in ("full", "no_aux", "scratch"):
        s = out["authors", arm]
        assert [x["lr"] for x in s["search"]] == [1e-3, 3e-3]
        assert s["grid"] == {"lrs": [1e-3, 3e-3], "max_epochs": 4, "patience": 1}
        best = max(s["search"], key=lambda x: x["tune"])  # the first best on ties
        assert s["lr"] == best["lr"] and all(r["lr"] == s["lr"] for r in s["runs"])
        assert s["runs"][0]["tune_curve"] == best["tune_curve"]  # seeds[0]: the search's run
        t = rep["datasets"]["authors"]["tuning"][arm]
        assert t["lr"] == s["lr"] and len(t["tune_curves"]) == 2
        assert t["steps"] == [r["steps"] for r in s["runs"]]


def test_the_product_is_the_full_arms_first_model(tiny_study):
    """The model finetune saved (and evaluate, gate, export, publish see) is the one the
    study measured: its lr is the full arm's choice, and it scores the held-out rows
    exactly as the full arm's first seed did (which trained outside them)."""
    p, out, _ = tiny_study
    full = out["authors", "full"]
    model, meta = TaskModel.load(p.artifacts("finetune", "authors"))
    assert (meta["lr"], meta["seed"]) == (full["lr"], 1) == (full["runs"][0]["lr"], 1)
    assert meta["best_epoch"] == full["runs"][0]["best_epoch"]
    tok = load_tokenizer(p.artifacts("finetune", "authors"))
    held = arms.held_out(p, "authors").report
    rows = encode(held, "classification", tok, meta["max_len"], meta["labels"])
    pred = predict(model, rows, special_ids(tok)["pad"]).argmax(-1).tolist()
    assert pred == full["runs"][0]["pred"]


def test_label_efficiency_curve_full_and_scratch_at_other_budgets(tiny_study):
    _, out, rep = tiny_study
    for arm in ("full", "scratch"):
        s = out["authors", arm]
        got = [(r["budget"], r["seed"], r["fit"]) for r in s["curve"]]
        assert got == [(16, 1, 13), (16, 2, 13)]
        assert all(r["lr"] == s["lr"] and 0 <= r["report"]["accuracy"] <= 1 for r in s["curve"])
    assert out["authors", "no_aux"]["curve"] == []  # the curve's arms: full and scratch
    e = rep["datasets"]["authors"]["label_efficiency"]
    assert e["budgets"] == [16, 40]
    full = [100 * r["report"]["accuracy"] for r in out["authors", "full"]["curve"]]
    assert e["arms"]["full"][16]["mean"] == pytest.approx(sum(full) / 2)
    assert set(e["labels_saved"]) == {16, 40}
    assert "### Label efficiency" in rep["markdown"]


def test_labels_needed_interpolates_in_log_labels():
    from model.ablation import labels_needed

    assert labels_needed([100, 400], [50, 70], 60) == pytest.approx(200)  # halfway in log
    assert labels_needed([100, 400], [50, 70], 45) == 100
    assert labels_needed([100, 400], [50, 70], 71) is None  # beyond the curve


def test_baseline_is_the_best_constant_on_the_rows_scored(tiny_study):
    import numpy as np

    _, out, _ = tiny_study
    for name in ("authors", "arc"):
        s = out[name, "full"]
        gold = np.asarray(s["gold"])
        best = max(np.mean(gold == c) for c in np.unique(gold))
        assert s["baseline"] == pytest.approx(best)


def test_label_samples_vary_with_the_seed_and_never_touch_the_held_out_rows(tiny_study):
    p = tiny_study[0]
    pool, held, dropped = arms.held_out(p, "authors")
    assert len(held) == 60 and len(pool) == 1272 - 60
    held_ids = {id(r) for r in held}
    budgets = []
    for seed in (1, 2, 3):
        fit, tune, rest = arms.budget_split(pool, 40, 0.2, seed)
        assert (len(fit), len(tune), len(rest)) == (32, 8, 1212 - 40)
        assert not held_ids & {id(r) for r in fit + tune + rest}
        budgets.append({r["text"] for r in fit + tune})
    assert budgets[0] != budgets[1] != budgets[2]
    with pytest.raises(ValueError, match="train has 1272 rows; study.report_rows=1270 leaves 2"):
        arms.held_out(p.model_copy(update={"study": p.study.model_copy(
            update={"report_rows": 1270})}), "authors")  # fmt: skip


def test_protocol_no_split_but_train_is_read_and_held_out_rows_only_at_the_end(
    tiny_study, monkeypatch
):
    """The loader and the model calls record what was read and in which order: the study
    reads train alone, trains every run, and only then predicts on the held-out rows."""
    p, out, _ = tiny_study
    events = []
    load, train, predict = arms.load_split, arms.finetune, arms.predict

    def loaded(cfg, split):
        events.append(("read", split))
        return load(cfg, split)

    def trained(model, fit, dev, *a, **k):
        events.append(("train", dev))
        return train(model, fit, dev, *a, **k)

    def predicted(model, examples, *a, **k):
        events.append(("predict", len(examples)))
        return predict(model, examples, *a, **k)

    monkeypatch.setattr(arms, "load_split", loaded)
    monkeypatch.setattr(arms, "finetune", trained)
    monkeypatch.setattr(arms, "predict", predicted)
    again = study.run(p, "authors", "scratch")
    assert {e for e in events if e[0] == "read"} == {("read", "train")}
    kinds = [e[0] for e in events if e[0] != "read"]
    # 2 lrs + 1 seed + the curve's 2 seeds, then the 4 models
    assert kinds == ["train"] * 5 + ["predict"] * 4
    assert all(e[1] is None for e in events if e[0] == "train")  # no dev to finetune()
    assert [e[1] for e in events if e[0] == "predict"] == [60] * 4
    assert again["protocol"][0].startswith(f"held out: 60 train rows (seed {p.study.report_seed})")
    assert again["protocol"][-1] == "final: 4 models scored the 60 held-out rows once"

    def numbers(runs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]

    assert numbers(again["runs"]) == numbers(out["authors", "scratch"]["runs"])  # same numbers


def test_zero_shot_multiple_choice_from_the_pretrained_lm(tiny_study):
    _, out, rep = tiny_study
    zs = out["arc", "full"]["zero_shot"]
    assert 0 < zs["accuracy"] < 1
    assert "zero_shot" not in out["arc", "scratch"] and "zero_shot" not in out["authors", "full"]
    assert rep["datasets"]["arc"]["zero_shot"] == pytest.approx(100 * zs["accuracy"])


def test_report_files_and_table(tiny_study):
    p, out, rep = tiny_study
    d = p.artifacts("report")
    assert sorted(x.name for x in d.iterdir()) == [
        "ablation.png",
        "label_efficiency.png",
        "metrics.json",
        "report.md",
        "table.json",
    ]
    full = [100 * r["report"]["accuracy"] for r in out["authors", "full"]["runs"]]
    assert rep["datasets"]["authors"]["arms"]["full"]["mean"] == pytest.approx(sum(full) / 2)
    md = (d / "report.md").read_text()
    assert "| Transformer w/o pre-training |" in md and "zero-shot pre-trained LM" in md
    assert json.loads((d / "metrics.json").read_text())["average"]["gain_pretraining"]["lo"]


def test_same_seed_same_numbers(tiny_study):
    p, out, _ = tiny_study
    again = study.run(p, "authors", "full")  # the product's arm, its model not saved
    assert [r["pred"] for r in again["runs"]] == [r["pred"] for r in out["authors", "full"]["runs"]]
    assert again["search"] == out["authors", "full"]["search"]


def test_unknown_arm_is_refused(tiny_study):
    with pytest.raises(ValueError, match="unknown arm 'nope'"):
        study.run(tiny_study[0], "authors", "nope")
    with pytest.raises(ValueError, match="arms.full: built in, the product"):
        load_params(ROOT / "params.yaml", ["study.arms={full: {init: pretrained}}"])


def _dvc(ws, *args) -> str:
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_changing_one_arm_reruns_only_its_stages_and_the_report(tmp_path):
    """dvc.yaml's matrix: every stage committed as up to date, then one arm's param edited."""
    from dvc.repo import Repo

    ws = tmp_path / "ws"
    ws.mkdir()
    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / f, ws / f)
    for d in ("genpt", "tasks", "model", "data"):
        shutil.copytree(ROOT / d, ws / d, ignore=shutil.ignore_patterns("__pycache__"))
    _dvc(ws, "init", "--no-scm")
    with Repo(str(ws)) as repo:  # stand-in outputs, so `dvc commit` records every stage
        outs = [o.fs_path for s in repo.index.stages for o in s.outs]
    for path in map(Path, outs):
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "x").write_text("x")
    _dvc(ws, "commit", "--force")
    assert json.loads(_dvc(ws, "status", "--json")) == {}

    text = (ws / "params.yaml").read_text().replace("scratch: {init: scratch}", "scratch: "
                                                   "{init: scratch, seeds: [1, 2]}")  # fmt: skip
    assert text != (ws / "params.yaml").read_text()
    (ws / "params.yaml").write_text(text)
    changed = set(json.loads(_dvc(ws, "status", "--json")))
    arms = {f"study@{d}-scratch" for d in load_params(ROOT / "params.yaml").datasets}
    assert changed == arms | {"report", "publish"}  # publish ships all of params.yaml


def test_held_out_rows_that_repeat_the_pool_or_the_corpus_are_found(tmp_path):
    """Near-duplicates of report rows, planted in the label pool (a phrase inside a pool
    row, the same text in other case and punctuation, most of the words) and in the corpus,
    are dropped and counted, or refused naming file, row and rule."""
    rows = [{"text": f"row {i} says {' '.join(f'w{i}x{j}' for j in range(12))}",
             "label": "a" if i % 2 else "b"} for i in range(40)]  # fmt: skip
    p = load_params(ROOT / "params.yaml", [
        f"datasets={{t: {{task_type: classification, train: {tmp_path / 'train.jsonl'}, "
        f"dev: {tmp_path / 'train.jsonl'}, labels: [a, b]}}}}",
        "finetune_by_dataset={t: {max_train_examples: 4}}",
        f"paths.corpus=[{tmp_path / 'corpus.txt'}]", f"corpus.root={tmp_path}",
        "study.report_rows=10",
    ])  # fmt: skip

    def write(rows, corpus=""):
        (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / "corpus.txt").write_text("Some unrelated prose for the corpus. " + corpus)

    write(rows)
    clean = arms.held_out(p, "t")
    assert len(clean.report) == 10 and clean.dropped == {}
    r = [x["text"] for x in clean.report]
    free = [i for i, x in enumerate(rows) if x["text"] not in r]  # pool rows, replaced below
    planted = [dict(x) for x in rows]
    for i, text in zip(free, [
        f"Before it, {r[0]}, and after it.",  # report row 0 inside a pool row
        r[1].upper() + "!",  # the same text, normalized
        " ".join(r[2].split()[:-1] + ["changed"]),  # 7 of its 8 8-grams
        " ".join(r[3].split()[2:6]),  # a 4-word phrase of report row 3
    ], strict=False):  # fmt: skip
        planted[i]["text"] = text
    write(planted, corpus=r[4])  # the same row count: carve() holds out the same rows
    got = arms.held_out(p, "t")
    assert got.dropped == {"label pool: inside a pool row": 1, "label pool: the same text": 1,
                           "label pool": 1, "label pool: holds a pool row": 1,
                           "corpus: a text found": 1}  # fmt: skip
    assert [x["text"] for x in got.report] == r[5:]
    p = p.model_copy(update={"study": p.study.model_copy(update={"report_leaks": "fail"})})
    with pytest.raises(Exception, match=r"train.jsonl: 5 of the 10 rows held out .* row \d+: "):
        arms.held_out(p, "t")

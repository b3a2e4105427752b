"""The ablation study stage (tasks/study.py): a tiny end-to-end study and report, the tune
split, the lr search, zero-shot multiple choice; and the dvc.yaml matrix's incrementality."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genpt.params import load_params
from tasks import pretrain, report, study
from tests.conftest import ROOT, copy_tokens


@pytest.fixture(scope="module")
def tiny_study(tokens, tmp_path_factory):
    """30 pre-training steps, then every arm on `authors` and `arc` over 2 seeds."""
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
        "finetune.epochs=2",
        "finetune.max_train_examples=40",
        "study.seeds=[1, 2]",
        "study.arms.scratch.lrs=[1.0e-3, 3.0e-3]",
        "datasets.arc={task_type: multiple_choice, train: data/finetune/arc/train.jsonl, "
        "dev: data/finetune/arc/dev.jsonl}",  # in data/, not a default: 3 to 5 choices
        "finetune_by_dataset.arc={}",  # both: the finetune section's 40 rows
        "finetune_by_dataset.authors={}",
    ]
    p = load_params(ROOT / "params.yaml", sets)
    datasets = {}
    for name in ("authors", "arc"):  # the first 60 dev rows keep evaluation quick
        dev = art.parent / f"{name}-dev.jsonl"
        lines = (ROOT / p.datasets[name].dev).read_text().splitlines(keepends=True)
        dev.write_text("".join(lines[:60]))
        datasets[name] = p.datasets[name].model_copy(update={"dev": str(dev)})
    p = p.model_copy(update={"datasets": datasets})
    pretrain.run(p)
    out = {(n, a): study.run(p, n, a) for n in p.datasets for a in p.study.arms}
    return p, out, report.run(p)


def test_every_arm_runs_every_seed_on_the_same_splits(tiny_study):
    p, out, _ = tiny_study
    full, scratch = out["authors", "full"], out["authors", "scratch"]
    assert [r["seed"] for r in full["runs"]] == [1, 2]
    assert full["examples"] == scratch["examples"] == {"fit": 32, "tune": 8, "dev": 60}
    assert full["init"] == "pretrained" and full["lm_coef"] == 0.5
    assert out["authors", "no_aux"]["lm_coef"] == 0.0 and scratch["init"] == "scratch"
    for r in full["runs"]:
        assert 1 <= r["best_epoch"] <= 2 and 0 <= r["dev"]["accuracy"] <= 1


def test_scratch_searches_lr_on_the_tune_split_and_records_it(tiny_study):
    _, out, _ = tiny_study
    s = out["authors", "scratch"]
    assert [x["lr"] for x in s["search"]] == [1e-3, 3e-3]
    best = max(s["search"], key=lambda x: x["tune"])
    assert s["lr"] == best["lr"] and all(r["lr"] == best["lr"] for r in s["runs"])
    assert s["runs"][0]["tune"] == best["tune"]  # the search's run for seeds[0] is reused
    assert "searched on the tune split" in s["tuning"] and "dev never used" in s["tuning"]
    assert out["authors", "full"]["search"] is None


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
        "metrics.json",
        "report.md",
        "table.json",
    ]
    full = [100 * r["dev"]["accuracy"] for r in out["authors", "full"]["runs"]]
    assert rep["datasets"]["authors"]["arms"]["full"]["mean"] == pytest.approx(sum(full) / 2)
    md = (d / "report.md").read_text()
    assert "| Transformer w/o pre-training |" in md and "zero-shot pre-trained LM" in md
    assert json.loads((d / "metrics.json").read_text())["average"]["gain_pretraining"]["lo"]


def test_same_seed_same_numbers(tiny_study):
    p, out, _ = tiny_study
    again = study.run(p, "authors", "full")
    assert [r["dev"] for r in again["runs"]] == [r["dev"] for r in out["authors", "full"]["runs"]]


def test_unknown_arm_is_refused(tiny_study):
    with pytest.raises(ValueError, match="unknown arm 'nope'"):
        study.run(tiny_study[0], "authors", "nope")


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

    text = (ws / "params.yaml").read_text().replace("lrs: [2.5e-4,", "lrs: [1.0e-4,")
    (ws / "params.yaml").write_text(text)
    changed = set(json.loads(_dvc(ws, "status", "--json")))
    arms = {f"study@{d}-scratch" for d in load_params(ROOT / "params.yaml").datasets}
    assert changed == arms | {"report", "publish"}  # publish ships all of params.yaml

"""The quality gate before publish: refuses a model below each threshold with a message
naming dataset, metric, value and threshold; passes one above; `latest` untouched on
refusal; --force publishes and is recorded. Models that learned nothing (random guesses,
constants) are refused on every default dataset; a real trained one passes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from genpt.params import load_params
from tasks import gate, publish
from tests.conftest import ROOT

N_ROWS = 400


def make_artifacts(a: Path, accuracy: float, baseline: float, gain: float) -> None:
    """The files publish reads: a fine-tuned `authors`, its eval (N_ROWS dev rows: the
    trivial baseline's class 0 is `baseline` of them, the model right on `accuracy`), the
    ablation report."""
    i = np.arange(N_ROWS)
    gold = np.where(i < round(baseline / 100 * N_ROWS), 0, 1 + i % 3)
    pred = np.where(i < round(accuracy * N_ROWS), gold, (gold + 1) % 4)
    files = {
        "tokenizer/tokenizer.json": '{"model": {}}',
        "pretrain/hf/config.json": '{"model_type": "gpt2"}',
        "finetune/authors/task.json": '{"task_type": "classification"}',
        "eval/authors/metrics.json": json.dumps({"accuracy": accuracy}),
        "eval/authors/predictions.json": json.dumps(
            {"gold": gold.tolist(), "pred": pred.tolist(), "baseline": 0}
        ),
    }
    for rel, text in files.items():
        (a / rel).parent.mkdir(parents=True, exist_ok=True)
        (a / rel).write_text(text)
    (a / "pretrain/hf/model.safetensors").write_bytes(os.urandom(1000))
    write_report(a, baseline, gain)


def write_report(a: Path, baseline: float, gain: float) -> None:
    """The ablation report: `authors`' baseline, the average gain's interval [gain, gain + 4]."""
    gains = {"mean": gain + 2, "lo": gain, "hi": gain + 4}
    report = {
        "datasets": {"authors": {"baseline": baseline}},
        "average": {"gain_pretraining": gains},
    }
    (a / "report").mkdir(parents=True, exist_ok=True)
    (a / "report/metrics.json").write_text(json.dumps(report))
    (a / "report/report.md").write_text("## Ablation\n")


def params_for(tmp_path: Path, *extra: str):
    p = load_params(
        ROOT / "params.yaml",
        [
            f"paths.artifacts={tmp_path / 'artifacts'}",
            f"publish.local_dir={tmp_path / 'reg'}",
            "publish.target=local",
            "gate.min_over_baseline=2",
            "gate.min_pretraining_gain=3",
            "gate.max_drop_vs_latest=4",
            *extra,
        ],
    )
    return p.model_copy(update={"datasets": {"authors": p.datasets["authors"]}})


def latest(tmp_path: Path) -> dict | None:
    path = tmp_path / "reg/models/genpt/latest"
    return json.loads(path.read_text()) if path.exists() else None


def test_passes_above_every_threshold_and_records_the_verdict(tmp_path):
    make_artifacts(tmp_path / "artifacts", accuracy=0.40, baseline=30.0, gain=5.0)
    receipt = publish.run(params_for(tmp_path), version="v1")
    assert receipt["gate"] == {"passed": True, "forced": False}
    manifest = json.loads((tmp_path / "reg/models/genpt/v1/manifest.json").read_text())
    assert manifest["gate"]["passed"] and manifest["gate"]["metrics"] == {"authors": 40.0}
    assert {c["check"] for c in manifest["gate"]["checks"]} == {"over_baseline", "pretraining_gain"}
    card = (tmp_path / "reg/models/genpt/v1/README.md").read_text()
    assert "Quality gate: **passed**" in card and "## Ablation" in card


@pytest.mark.parametrize(
    ("accuracy", "baseline", "gain", "message"),
    [
        (
            0.31,
            30.0,
            5.0,
            r"authors: accuracy 31\.0 - trivial baseline 30\.0 = \+1\.0 \[\+0\.\d, \+2\.\d\] on "
            r"400 dev rows: the lower bound of its 95% interval = 0\.\d\d points, needs > "
            r"2\.0 \(gate\.min_over_baseline\)",
        ),
        (
            0.40,
            30.0,
            2.5,
            r"all datasets: average gain of pre-training \(full - scratch, pooled\) \+4\.5 "
            r"\[\+2\.5, \+6\.5\]: the lower bound of its 95% interval = 2\.50 points, "
            r"needs > 3\.0 \(gate\.min_pretraining_gain\)",
        ),
    ],
)
def test_refuses_below_a_threshold_and_keeps_latest(tmp_path, accuracy, baseline, gain, message):
    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.40, baseline=30.0, gain=5.0)
    publish.run(params_for(tmp_path), version="v1")
    make_artifacts(art, accuracy, baseline, gain)
    with pytest.raises(gate.GateFailed, match=message):
        publish.run(params_for(tmp_path), version="v2")
    assert latest(tmp_path) == {"version": "v1"}
    assert not (tmp_path / "reg/models/genpt/v2").exists()


def test_refuses_a_drop_against_the_published_latest(tmp_path):
    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.50, baseline=30.0, gain=5.0)
    publish.run(params_for(tmp_path), version="v1")
    make_artifacts(art, accuracy=0.45, baseline=30.0, gain=5.0)  # 5 points below v1
    with pytest.raises(
        gate.GateFailed,
        match=r"authors: accuracy: published latest 50\.0 - this "
        r"45\.0 = 5\.00 points, needs <= 4\.0",
    ):
        publish.run(params_for(tmp_path), version="v2")
    assert latest(tmp_path) == {"version": "v1"}
    make_artifacts(art, accuracy=0.47, baseline=30.0, gain=5.0)  # within 4 points
    assert publish.run(params_for(tmp_path), version="v3")["gate"]["passed"]


def test_no_report_is_refused_and_force_is_recorded(tmp_path):
    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.40, baseline=30.0, gain=5.0)
    (art / "report/metrics.json").unlink()
    with pytest.raises(gate.GateFailed, match="ablation report"):
        publish.run(params_for(tmp_path), version="v1")
    assert latest(tmp_path) is None
    receipt = publish.run(params_for(tmp_path), version="v1", force=True)
    assert receipt["gate"] == {"passed": False, "forced": True}
    manifest = json.loads((tmp_path / "reg/models/genpt/v1/manifest.json").read_text())
    assert manifest["gate"]["forced"] is True and not manifest["gate"]["passed"]
    assert (
        "FAILED, published with --force" in (tmp_path / "reg/models/genpt/v1/README.md").read_text()
    )


def test_cli_exit_is_nonzero_with_the_message(tmp_path):
    import subprocess
    import sys

    make_artifacts(tmp_path / "artifacts", accuracy=0.31, baseline=30.0, gain=5.0)
    sets = [
        f"paths.artifacts={tmp_path / 'artifacts'}",
        f"publish.local_dir={tmp_path / 'reg'}",
        "publish.target=local",
        "gate.min_over_baseline=2",
        "datasets={authors: {task_type: classification, train: x, dev: y, labels: [a, b, c, d]}}",
    ]
    cmd = [sys.executable, "-m", "genpt.cli", "publish", *[f"-S{s}" for s in sets]]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "quality gate: 1 check(s) failed" in r.stderr and "gate.min_over_baseline" in r.stderr
    assert latest(tmp_path) is None


def test_gate_stage_writes_its_verdict_and_fails_below(tmp_path):
    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.31, baseline=30.0, gain=5.0)
    with pytest.raises(gate.GateFailed, match="gate.min_over_baseline"):
        gate.run(params_for(tmp_path))
    failed = json.loads((art / "gate/verdict.json").read_text())  # every check, pass or fail
    assert failed["passed"] is False and failed["forced"] is False
    assert {c["check"]: c["passed"] for c in failed["checks"]} == {
        "over_baseline": False,
        "pretraining_gain": True,
    }
    assert all({"value", "threshold", "rule", "what"} <= set(c) for c in failed["checks"])
    make_artifacts(art, accuracy=0.40, baseline=30.0, gain=5.0)
    v = gate.run(params_for(tmp_path))
    assert v["passed"] and json.loads((art / "gate/verdict.json").read_text()) == v
    assert latest(tmp_path) is None  # the stage publishes nothing


def test_disabled_gate_publishes_and_says_so(tmp_path):
    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.10, baseline=30.0, gain=-5.0)  # would fail every check
    (art / "eval/authors/metrics.json").unlink()  # and nothing to read
    receipt = publish.run(params_for(tmp_path, "gate.enabled=false"), version="v1")
    assert receipt["gate"] == {"passed": None, "forced": False}
    manifest = json.loads((tmp_path / "reg/models/genpt/v1/manifest.json").read_text())
    assert manifest["gate"] == {"passed": None, "enabled": False, "checks": [], "metrics": {}}
    assert "Quality gate: disabled" in (tmp_path / "reg/models/genpt/v1/README.md").read_text()


def test_a_study_without_scratch_fails_the_pretraining_check_loudly(tmp_path):
    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.40, baseline=30.0, gain=5.0)
    report = json.loads((art / "report/metrics.json").read_text())
    del report["average"]["gain_pretraining"]  # what the report writes with no scratch arm
    (art / "report/metrics.json").write_text(json.dumps(report))
    with pytest.raises(gate.GateFailed, match=r"no `scratch` arm in study\.arms"):
        gate.run(params_for(tmp_path))
    v = json.loads((art / "gate/verdict.json").read_text())
    assert [c["check"] for c in v["checks"] if not c["passed"]] == ["pretraining_gain"]
    assert gate.run(params_for(tmp_path, "gate.min_pretraining_gain=null"))["passed"]


def test_one_seed_per_arm_fails_the_pretraining_check_loudly(tmp_path):
    """With 1 seed per arm the report's average gain has no interval (lo None): the check
    fails, saying why, instead of falling back on the mean."""
    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.40, baseline=30.0, gain=5.0)
    report = json.loads((art / "report/metrics.json").read_text())
    report["average"]["gain_pretraining"] = {"mean": 9.0, "lo": None, "hi": None}
    (art / "report/metrics.json").write_text(json.dumps(report))
    with pytest.raises(gate.GateFailed, match=r"\+9\.0 has no interval: it needs 2\+ study\.seeds"):
        gate.run(params_for(tmp_path))
    v = json.loads((art / "gate/verdict.json").read_text())
    assert [(c["check"], c["value"]) for c in v["checks"] if not c["passed"]] == [
        ("pretraining_gain", None)
    ]
    publish.run(params_for(tmp_path), version="v1", force=True)  # the card shows it as such
    card = (tmp_path / "reg/models/genpt/v1/README.md").read_text()
    assert "| pretraining_gain | all | average gain" in card and "| – | > 3.0 | no |" in card
    assert gate.run(params_for(tmp_path, "gate.min_pretraining_gain=null"))["passed"]


# --- models that learned nothing, on the default datasets' dev files (every task type) ----

SEEDS = range(1, 8)  # as in issue 21's measurement


def no_skill_models(ds, rows: list[dict]) -> dict[str, np.ndarray]:
    """{model: dev predictions}: random guesses (SEEDS) and every constant."""
    n, out = len(rows), {}
    if ds.task_type == "similarity":
        constants, draw = [2.5], lambda rng: rng.uniform(0, 5, n)
    elif ds.task_type == "multiple_choice":
        widths = np.array([len(r["choices"]) for r in rows])
        constants, draw = range(widths.min()), lambda rng: rng.integers(0, widths)
    else:
        constants, draw = range(len(ds.labels)), lambda rng: rng.integers(0, len(ds.labels), n)
    for seed in SEEDS:
        out[f"random (seed {seed})"] = draw(np.random.default_rng(seed))
    return {**out, **{f"constant {c}": np.full(n, c) for c in constants}}


def write_eval(params, name: str, gold, pred, baseline) -> None:
    """What stage `evaluate` writes for a model that predicts `pred` on the dev rows."""
    from genpt import artifacts
    from genpt.io import write_json
    from model import bootstrap
    from tasks import evaluate

    metric = params.datasets[name].metric
    write_json(artifacts.eval_metrics(params, name), {metric: bootstrap.score(metric, pred, gold)})
    evaluate.write_predictions(params, name, gold, pred, baseline)


def test_models_that_learned_nothing_are_refused_on_every_dataset(tmp_path):
    """Random guesses and constants, through the real gate on every default dataset's dev
    rows, never pass; the old rule (a fixed margin of 1 point on the mean) passed some."""
    from genpt.ingest.loaders import load_split
    from genpt.quality_gate import over_baseline
    from model import bootstrap
    from model.metrics import constant_prediction
    from model.schema import label_of

    art = tmp_path / "artifacts"
    make_artifacts(art, accuracy=0.40, baseline=30.0, gain=5.0)  # the report, passing
    registry = [f"publish.local_dir={tmp_path / 'reg'}", "publish.target=local"]
    p = load_params(ROOT / "params.yaml", [f"paths.artifacts={art}", *registry])  # defaults
    old_rule_passed, random_models = [], {}
    for name, ds in p.datasets.items():
        rows = load_split(ds, "dev")
        gold = np.array([label_of(r, ds.task_type, ds.labels) for r in rows])
        baseline = constant_prediction(gold, ds.task_type == "similarity")  # the best constant
        base_score = bootstrap.score(ds.metric, np.full(len(gold), baseline), gold)
        for model, pred in no_skill_models(ds, rows).items():
            write_eval(p, name, gold, pred, baseline)
            check = over_baseline(p, name)
            assert not check["passed"] and check["value"] == check["lo"] <= 0, (name, model, check)
            if 100 * (bootstrap.score(ds.metric, pred, gold) - base_score) >= 1.0:
                old_rule_passed.append((name, model))
        random_models[name] = (gold, no_skill_models(ds, rows)["random (seed 1)"], baseline)
    assert old_rule_passed, "no model that learned nothing passed the old rule either"

    for name, (gold, pred, baseline) in random_models.items():  # one random model, all of it
        write_eval(p, name, gold, pred, baseline)
    with pytest.raises(gate.GateFailed, match="4 check.s. failed"):
        gate.run(p)
    v = json.loads((art / "gate/verdict.json").read_text())  # every check, failed or passed
    assert [(c["check"], c["dataset"], c["passed"]) for c in v["checks"]] == [
        *(("over_baseline", name, False) for name in p.datasets),
        ("pretraining_gain", None, True),
    ]
    assert all(
        {"value", "threshold", "rule", "what", "mean", "lo", "hi"} <= set(c) for c in v["checks"]
    )


def test_a_trained_model_passes(tokens, tmp_path):
    """A real model (fine-tuned from scratch on `authors`' 300 labels by the stages: 10 to
    40 s on 2 CPU cores) is blessed by the default thresholds, and the verdict lists every
    check with its figures."""
    from tasks import evaluate, finetune
    from tests.conftest import copy_tokens, tiny

    art = tmp_path / "artifacts"
    copy_tokens(tokens, art)
    sets = ["finetune.init=scratch", "finetune.epochs=6", "finetune.max_len=64",
            "study.lrs=[3.0e-3]", "study.seeds=[1]", "study.report_rows=100"]  # fmt: skip
    registry = [f"publish.local_dir={tmp_path / 'reg'}", "publish.target=local"]
    p = load_params(ROOT / "params.yaml", tiny(art, *sets, *registry))
    p = p.model_copy(update={"datasets": {"authors": p.datasets["authors"]}})
    finetune.run(p, "authors")
    evaluate.run(p, "authors")
    write_report(art, baseline=24.0, gain=5.0)
    v = gate.run(p)
    assert v["passed"], v
    assert [c["check"] for c in v["checks"]] == ["over_baseline", "pretraining_gain"]
    (check,) = [c for c in v["checks"] if c["check"] == "over_baseline"]
    assert check["lo"] > p.gate.min_over_baseline == 0 and check["mean"] > 10, check
    assert json.loads((art / "gate/verdict.json").read_text()) == v

"""The quality gate before publish: refuses a model below each threshold with a message
naming dataset, metric, value and threshold; passes one above; `latest` untouched on
refusal; --force publishes and is recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genpt.params import load_params
from tasks import gate, publish
from tests.conftest import ROOT


def make_artifacts(a: Path, accuracy: float, baseline: float, gain: float) -> None:
    """The files publish reads: a fine-tuned `authors`, its eval, the ablation report."""
    files = {
        "tokenizer/tokenizer.json": '{"model": {}}',
        "pretrain/hf/config.json": '{"model_type": "gpt2"}',
        "finetune/authors/task.json": '{"task_type": "classification"}',
        "eval/authors/metrics.json": json.dumps({"accuracy": accuracy}),
        "report/metrics.json": json.dumps(
            {
                "datasets": {"authors": {"baseline": baseline}},
                "average": {"gain_pretraining": {"mean": gain, "lo": 1.0, "hi": 9.0}},
            }
        ),
        "report/report.md": "## Ablation\n",
    }
    for rel, text in files.items():
        (a / rel).parent.mkdir(parents=True, exist_ok=True)
        (a / rel).write_text(text)
    (a / "pretrain/hf/model.safetensors").write_bytes(os.urandom(1000))


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
            r"authors: accuracy 31\.0 - trivial baseline 30\.0 = 1\.00 points, "
            r"needs >= 2\.0 \(gate\.min_over_baseline\)",
        ),
        (
            0.40,
            30.0,
            2.5,
            r"all datasets: average gain of pre-training \(full - scratch\) = 2\.50 "
            r"points, needs >= 3\.0 \(gate\.min_pretraining_gain\)",
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

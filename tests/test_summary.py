"""The run summary (genpt/summary.py) from fixed stage outputs."""

from __future__ import annotations

import json
import re

from genpt import summary
from genpt.params import load_params
from tests.conftest import ROOT


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_stages_of_one_matrix_are_one_row():
    stages = [
        {"stage": "validate", "ran": False, "seconds": 0.4},
        {"stage": "study@a-full", "ran": True, "seconds": 70},
        {"stage": "study@a-scratch", "ran": False, "seconds": 1.0},
        {"stage": "publish", "ran": True, "seconds": 3700},
    ]
    assert summary.stage_rows(stages) == [
        ["validate", "up to date", "0.4 s"],
        ["study@… (2)", "1 ran, 1 up to date", "1 min 11 s"],
        ["publish", "ran", "1 h 01 min"],
    ]


def test_render_reads_every_stage_output(tmp_path):
    p = load_params(ROOT / "params.yaml", [f"paths.artifacts={tmp_path}"])
    names = list(p.datasets)
    summary.write_run(p, [{"stage": "pretrain", "ran": True, "seconds": 450.0}])
    _write(p.artifacts("pretrain", "metrics.json"), {
        "val/loss": 4.2751, "val/perplexity": 71.9, "train/tokens_per_s_mean": 11277.4,
        "train/mfu": 0.477, "step": 2400, "tokens": 4915200})  # fmt: skip
    first = names[0]
    metric = p.datasets[first].metric
    _write(p.artifacts("eval", first, "metrics.json"), {metric: 0.674})
    gain = {"mean": 22.7, "lo": 7.6, "hi": 37.8}
    arms = {"full": {"mean": 67.4, "std": 3.9}, "scratch": {"mean": 44.7, "std": 7.3}}
    _write(p.artifacts("report", "metrics.json"), {
        "datasets": {first: {"baseline": 24.0, "arms": arms, "gain_pretraining": gain}},
        "average": {"baseline": 24.0, "arms": {"full": 67.4, "scratch": 44.7},
                    "gain_pretraining": gain}})  # fmt: skip
    _write(p.artifacts("gate", "verdict.json"), {"passed": False, "checks": [
        {"check": "pretraining_gain", "dataset": None, "what": "average full - scratch",
         "value": 0.5, "rule": ">=", "threshold": 1.0, "passed": False}]})  # fmt: skip
    text = summary.render(p)
    lines = text.splitlines()
    assert lines[0] == "stages: 1 ran, 0 up to date, 7 min 30 s"
    assert "pre-training: val loss 4.275 (perplexity 71.9), 11,277 tokens/s, MFU 47.7%" in text
    row = next(ln for ln in lines if ln.strip().startswith(first))
    assert row.split()[1:] == [metric, "24.0", "44.7", "±", "7.3", "67.4", "±", "3.9",
                               "+22.7", "[+7.6,", "+37.8]", "67.4"]  # fmt: skip
    other = next(ln for ln in lines if ln.strip().startswith(names[1]))
    assert other.split()[2:] == ["–"] * 5  # not evaluated, not in the report
    head = next(i for i, ln in enumerate(lines) if ln.strip().startswith("dataset "))
    # each figure's rows, and which arm is the product, in the table itself
    assert re.split(r"\s{2,}", lines[head].strip())[1:] == [
        "metric", "baseline (held-out)", "scratch (held-out)", "full = product (held-out)",
        "gain (95% CI)", "product (dev)"]  # fmt: skip
    assert "gate: FAILED: average full - scratch = 0.5 (needs >= 1.0)" in text
    assert lines[-1] == "published: nothing yet"

    _write(p.artifacts("publish", "receipt.json"), {
        "uri": "s3://genpt-models/models/genpt/v1/", "store": "s3",
        "why": "an S3 endpoint is configured (env)",
        "gate": {"passed": True, "forced": True}})  # fmt: skip
    assert summary.render(p).splitlines()[-1] == (
        "published: s3://genpt-models/models/genpt/v1/ (s3: an S3 endpoint is configured (env))"
        " (gate overridden with --force)"
    )


def test_a_one_seed_arm_shows_no_spread(tmp_path):
    """1 seed has no std: the mean alone, not '± 0.0'; 2+ seeds keep their ±."""
    p = load_params(ROOT / "params.yaml", [f"paths.artifacts={tmp_path}"])
    first = next(iter(p.datasets))
    arms = {"full": {"mean": 61.0, "std": 0.0, "n": 1}, "scratch": {"mean": 40.0, "std": 2.5,
            "n": 3}}  # fmt: skip
    _write(p.artifacts("report", "metrics.json"), {
        "datasets": {first: {"baseline": 24.0, "arms": arms,
                             "gain_pretraining": {"mean": 21.0, "lo": None, "hi": None}}},
        "average": {}})  # fmt: skip
    row = next(ln for ln in summary.dataset_lines(p) if ln.strip().startswith(first))
    assert row.split()[2:] == ["24.0", "40.0", "±", "2.5", "61.0", "+21.0", "–"]
    assert "± 0.0" not in "\n".join(summary.dataset_lines(p))

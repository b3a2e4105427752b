"""The ablation report's arithmetic (model/ablation.py, genpt/ablation_report.py,
tasks/report.py) against a hand computation on fixed study files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genpt import ablation_report
from genpt.params import load_params
from model import bootstrap
from model.ablation import across_datasets, average, summarize
from tasks import report
from tests.conftest import ROOT

# dataset -> arm -> held-out metric per seed (0..1), as study/DATASET/ARM.json holds them
FIXED = {
    "authors": {
        "full": [0.60, 0.62, 0.64],
        "no_aux": [0.58, 0.60, 0.59],
        "scratch": [0.50, 0.51, 0.55],
    },
    "stsb": {
        "full": [0.30, 0.34, 0.32],
        "no_aux": [0.31, 0.29, 0.30],
        "scratch": [0.10, 0.14, 0.12],
    },
}
METRICS = {"authors": "accuracy", "stsb": "pearson"}
N = 200  # held-out rows


def gold_of(name: str) -> np.ndarray:
    return np.arange(N) % 4 if name == "authors" else np.random.default_rng(0).normal(size=N)


def predictions(name: str, x: float, seed: int) -> np.ndarray:
    """Predictions scoring exactly x: accuracy x, or Pearson x."""
    gold, rng = gold_of(name), np.random.default_rng(1000 + seed)  # not gold's seed
    if METRICS[name] == "accuracy":
        right = rng.permutation(N) < round(x * N)
        return np.where(right, gold, (gold + 1) % 4)
    z = (gold - gold.mean()) / gold.std()
    e = rng.normal(size=N)
    e -= e.mean() + (e @ z) / (z @ z) * z  # orthogonal to gold
    return x * z + math.sqrt(1 - x * x) * e / e.std()


def write_study(art, values=FIXED, baseline=0.25, zero_shot=None):
    for name, arms in values.items():
        metric = METRICS[name]
        for k, (arm, xs) in enumerate(arms.items()):
            runs = [{"seed": i + 1, "report": {metric: x}, "best_epoch": 2, "epochs": 4,
                     "steps": 60, "pred": predictions(name, x, 10 * k + i).tolist()}
                    for i, x in enumerate(xs)]  # fmt: skip
            s = {
                "metric": metric,
                "baseline": baseline if name == "authors" else 0.0,
                "gold": gold_of(name).tolist(),
                "examples": {"report": N},
                "lr": 5e-4,
                "grid": {"lrs": [5e-4, 2e-3], "max_epochs": 20, "patience": 2},
                "search": [
                    {"lr": lr, "epochs": 4, "tune_curve": [0.5, 0.6, 0.55, 0.5]}
                    for lr in (5e-4, 2e-3)
                ],  # fmt: skip
                "runs": runs,
            }
            if zero_shot is not None and arm == "full":
                s["zero_shot"] = {"accuracy": zero_shot}
            path = art / "study" / name / f"{arm}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(s))


def params_for(art):
    arms = "study.arms={no_aux: {init: pretrained, lm_coef: 0.0}, scratch: {init: scratch}}"
    p = load_params(ROOT / "params.yaml", [f"paths.artifacts={art}", arms])
    return p.model_copy(update={"datasets": {n: p.datasets[n] for n in FIXED}})


def test_mean_std_by_hand():
    s = summarize([60, 62, 64])
    assert s["mean"] == 62 and s["std"] == pytest.approx(2.0) and s["n"] == 3
    assert summarize([7.0])["std"] is None  # one run: no spread


def test_predictions_score_what_the_fixture_says():
    for name, arms in FIXED.items():
        for x in arms["full"]:
            assert bootstrap.score(METRICS[name], predictions(name, x, 1), gold_of(name)) == (
                pytest.approx(x)
            )


def test_average_gain_over_datasets_by_hand():
    a = {"mean": 10.0, "lo": 0.0, "var": 11 / 3, "df": 3.5}
    b = {"mean": 20.0, "lo": 0.0, "var": 8 / 3, "df": 4.0}
    g = average([a, b])
    terms = [11 / 12, 8 / 12]  # var / D^2
    df = sum(terms) ** 2 / (terms[0] ** 2 / 3.5 + terms[1] ** 2 / 4.0)
    from scipy.stats import t

    assert g["mean"] == pytest.approx(15.0) and g["df"] == pytest.approx(df)
    assert g["hi"] - 15 == pytest.approx(t.ppf(0.975, df) * math.sqrt(sum(terms)))
    assert average([a, {**b, "lo": None}])["lo"] is None  # a dataset without an interval


def test_report_from_fixed_study_files(tmp_path):
    art = tmp_path / "artifacts"
    write_study(art)
    out = report.run(params_for(art))
    d = out["datasets"]
    assert d["authors"]["arms"]["full"]["mean"] == pytest.approx(62.0)
    assert d["authors"]["arms"]["scratch"]["std"] == pytest.approx(math.sqrt(7))
    assert d["authors"]["baseline"] == pytest.approx(25.0) and d["stsb"]["baseline"] == 0
    assert d["authors"]["gain_pretraining"]["mean"] == pytest.approx(10.0)
    assert d["authors"]["gain_aux_lm"]["mean"] == pytest.approx(62 - 59)
    assert d["authors"]["split"] == f"held out: {N} train rows"
    g = d["stsb"]["gain_pretraining"]  # the report's interval is model/bootstrap.py's
    study = {a: json.loads((art / f"study/stsb/{a}.json").read_text()) for a in FIXED["stsb"]}
    preds = [[np.asarray(r["pred"]) for r in study[a]["runs"]] for a in ("full", "scratch")]
    want = bootstrap.gain("pearson", np.asarray(study["full"]["gold"]), *preds)
    assert (g["mean"], g["lo"], g["hi"]) == pytest.approx((20.0, want["lo"], want["hi"]))
    assert d["stsb"]["paper"] == {"full": 82.0, "scratch": 30.9, "no_aux": 83.2}
    avg = out["average"]
    assert avg["arms"]["full"] == pytest.approx((62 + 32) / 2)
    assert avg["arms"]["scratch"] == pytest.approx((52 + 12) / 2)
    assert avg["gain_pretraining"]["mean"] == pytest.approx(15.0)
    assert avg["gain_pretraining"]["lo"] < 15.0 < avg["gain_pretraining"]["hi"]
    assert avg["paper"]["full"] == 74.7

    files = {p.name for p in (art / "report").iterdir()}
    assert files == {"metrics.json", "table.json", "report.md", "ablation.png",
                     "label_efficiency.png"}  # fmt: skip
    for png in ("ablation.png", "label_efficiency.png"):
        assert (art / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (art / "report/report.md").read_text()
    assert "| Transformer w/ aux LM (full) | 47.0 | 62.0 ± 2.0 | 32.0 ± 2.0 |" in md
    assert "| Transformer w/o pre-training | 32.0 | 52.0 ± 2.6 | 12.0 ± 2.0 |" in md
    assert "gain of pre-training (full − scratch), 95% CI | +15.0 [" in md
    rows = json.loads((art / "report/table.json").read_text())
    assert [r["method"] for r in rows] == [
        "Transformer w/ aux LM (full)",
        "Transformer w/o aux LM",
        "Transformer w/o pre-training",
        "trivial baseline (majority class / constant)",
        "gain of pre-training (full − scratch), 95% CI",
        "gain of aux LM (full − no_aux), 95% CI",
    ]
    assert rows[0]["stsb (pearson)"] == "32.0 ± 2.0"


def test_missing_study_file_names_the_stage(tmp_path):
    art = tmp_path / "artifacts"
    write_study(art)
    (art / "study/stsb/scratch.json").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"scratch.json: missing \(run `genpt study stsb scratch`\)"
    ):
        report.run(params_for(art))


def test_a_one_seed_arm_shows_no_spread(tmp_path):
    art = tmp_path / "artifacts"
    one_seed = {n: {**arms, "no_aux": arms["no_aux"][:1]} for n, arms in FIXED.items()}
    write_study(art, one_seed)
    report.run(params_for(art))
    md = (art / "report/report.md").read_text()
    assert "| Transformer w/o aux LM | 44.5 | 58.0 | 31.0 |" in md  # no "± 0.0"
    assert "| Transformer w/ aux LM (full) | 47.0 | 62.0 ± 2.0 | 32.0 ± 2.0 |" in md
    assert "| gain of aux LM (full − no_aux), 95% CI | +2.5 | +4.0 | +1.0 |" in md  # no interval


def test_tuning_choices_are_reported_and_edges_and_capped_runs_flagged():
    grid = {"lrs": [2.5e-4, 1e-3, 4e-3], "max_epochs": 6, "patience": 2}
    search = [{"lr": lr, "tune_curve": [0.5] * 4} for lr in grid["lrs"]]

    def run(best, epochs):
        return {"best_epoch": best, "epochs": epochs, "steps": 15 * epochs}

    scratch = {"lr": 2.5e-4, "grid": grid, "search": search, "runs": [run(6, 6), run(4, 6)]}
    full = {"lr": 1e-3, "grid": grid, "search": search, "runs": [run(3, 5)]}
    t = ablation_report.tuning({"full": full, "scratch": scratch})
    assert t["full"]["flags"] == []  # stopped 2 epochs after its best, before the cap
    assert t["full"]["tune_curves"]["lr 0.004"] == [0.5] * 4
    assert t["scratch"]["flags"] == [
        "lr 0.00025 on the low edge of [0.00025, 0.001, 0.004]",
        "best epoch = its last (the cap, 6) in 1 of 2 runs: still learning",
    ]
    scratch.update(lr=1e-3, runs=[run(5, 6)])  # at the cap, but past its best: not flagged
    assert ablation_report.tuning({"scratch": scratch})["scratch"]["flags"] == []
    md = "\n".join(ablation_report.tuning_lines({"datasets": {"sst2": {"tuning": t}}}))
    want = "| sst2 | scratch | 0.00025 (0.00025, 0.001, 0.004) | 6/6/90, 4/6/90 | lr 0.00025 on"
    assert want in md


def test_gain_across_datasets_by_hand():
    g = across_datasets({"a": 10.0, "b": 20.0, "c": 30.0})
    half = 4.302652729911275 * math.sqrt(100 / 3)  # t(0.975, 2) * sd of the mean of gains
    assert g["mean"] == pytest.approx(20.0) and g["n"] == 3 and g["df"] == 2
    assert (g["lo"], g["hi"]) == pytest.approx((20 - half, 20 + half))
    assert g["leave_one_out"] == pytest.approx({"a": 25.0, "b": 20.0, "c": 15.0})
    assert across_datasets({"a": 10.0})["lo"] is None


def test_report_spread_and_averages_per_metric(tmp_path):
    art = tmp_path / "artifacts"
    write_study(art)
    out = report.run(params_for(art))
    g = out["average"]["gain_pretraining_across_datasets"]
    assert g["mean"] == pytest.approx(15.0) and g["df"] == 1  # gains 10 and 20
    assert out["average"]["by_metric"]["accuracy"]["full"] == pytest.approx(62.0)
    assert out["average"]["by_metric"]["pearson"]["scratch"] == pytest.approx(12.0)
    md = (art / "report/report.md").read_text()
    assert "leaving one dataset out: +10.0 (without stsb) to +20.0 (without authors)" in md
    assert (
        "Average over the pearson datasets (stsb): full 32.0, no_aux 30.0, scratch 12.0, "
        "gain_pretraining +20.0, gain_aux_lm +2.0." in md
    )
    assert "Protocol (genpt/arms.py): scored once" in md and "authors 200 train rows" in md

"""The ablation report's arithmetic (model/ablation.py, tasks/report.py) against a hand
computation on fixed study files."""

from __future__ import annotations

import json
import math

import pytest

from genpt import ablation_report
from genpt.params import load_params
from model.ablation import across_datasets, average_gain, gain, summarize
from tasks import report
from tests.conftest import ROOT

# dataset -> arm -> dev metric per seed (0..1), as study/DATASET/ARM.json holds them
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
T975 = {2: 4.302652729911275, 4: 2.7764451051977987}  # Student t quantiles (tables)


def write_study(art, values=FIXED, baseline=0.25, zero_shot=None):
    metrics = {"authors": "accuracy", "stsb": "pearson"}
    for name, arms in values.items():
        for arm, xs in arms.items():
            s = {
                "metric": metrics[name],
                "baseline": baseline if name == "authors" else 0.0,
                "runs": [{"seed": i, "dev": {metrics[name]: x}} for i, x in enumerate(xs)],
            }
            if zero_shot is not None and arm == "full":
                s["zero_shot"] = {"accuracy": zero_shot}
            path = art / "study" / name / f"{arm}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(s))


def params_for(art):
    p = load_params(ROOT / "params.yaml", [f"paths.artifacts={art}"])
    return p.model_copy(update={"datasets": {n: p.datasets[n] for n in FIXED}})


def test_mean_std_by_hand():
    s = summarize([60, 62, 64])
    assert s["mean"] == 62 and s["std"] == pytest.approx(2.0) and s["n"] == 3
    assert summarize([7.0])["std"] == 0.0


def test_welch_gain_interval_by_hand():
    # full 60, 62, 64 (var 4); scratch 50, 51, 55 (mean 52, var 7): se^2 = 4/3 + 7/3 = 11/3
    g = gain([60, 62, 64], [50, 51, 55])
    df = (11 / 3) ** 2 / ((4 / 3) ** 2 / 2 + (7 / 3) ** 2 / 2)
    assert g["mean"] == pytest.approx(10.0) and g["df"] == pytest.approx(df)
    from scipy.stats import t

    half = t.ppf(0.975, df) * math.sqrt(11 / 3)
    assert (g["lo"], g["hi"]) == pytest.approx((10 - half, 10 + half))
    # equal variances and n: df = 2(n-1) = 4, the textbook pooled case
    g = gain([1, 2, 3], [0, 1, 2])
    assert g["df"] == pytest.approx(4) and g["hi"] - 1 == pytest.approx(T975[4] * math.sqrt(2 / 3))
    assert gain([1.0], [0.0])["lo"] is None  # one seed: no interval


def test_average_gain_over_datasets_by_hand():
    a = ([60, 62, 64], [50, 51, 55])  # gain 10, se^2 11/3
    b = ([30, 34, 32], [10, 14, 12])  # gain 20, se^2 4/3 + 4/3 = 8/3
    g = average_gain([a, b])
    var = (11 / 3 + 8 / 3) / 4
    terms = [4 / 3, 7 / 3, 4 / 3, 4 / 3]
    df = sum(terms) ** 2 / sum(x**2 / 2 for x in terms)
    from scipy.stats import t

    assert g["mean"] == pytest.approx(15.0) and g["df"] == pytest.approx(df)
    assert g["hi"] - 15 == pytest.approx(t.ppf(0.975, df) * math.sqrt(var))


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
    assert d["stsb"]["paper"] == {"full": 82.0, "scratch": 30.9, "no_aux": 83.2}
    avg = out["average"]
    assert avg["arms"]["full"] == pytest.approx((62 + 32) / 2)
    assert avg["arms"]["scratch"] == pytest.approx((52 + 12) / 2)
    assert avg["gain_pretraining"]["mean"] == pytest.approx(15.0)
    assert avg["paper"]["full"] == 74.7

    files = {p.name for p in (art / "report").iterdir()}
    assert files == {"metrics.json", "table.json", "report.md", "ablation.png"}
    assert (art / "report/ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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


def test_tuning_choices_are_reported_and_edges_flagged():
    scratch = {
        "lr": 2.5e-4,
        "max_epochs": 3,
        "search": [{"lr": x} for x in (2.5e-4, 1e-3, 4e-3)],
        "runs": [{"best_epoch": 3}, {"best_epoch": 2}],
    }
    full = {"lr": 5e-4, "max_epochs": 3, "search": None, "runs": [{"best_epoch": 1}]}
    t = ablation_report.tuning({"full": full, "scratch": scratch})
    assert t["full"] == {"lr": 5e-4, "lr_grid": None, "max_epochs": 3, "best_epochs": [1],
                         "flags": []}  # fmt: skip
    assert t["scratch"]["flags"] == [
        "lr 0.00025 on the low edge of [0.00025, 0.001, 0.004]",
        "best epoch = max epochs (3) in 1 of 2 runs",
    ]
    scratch["lr"] = 1e-3
    scratch["runs"] = [{"best_epoch": 2}]
    assert ablation_report.tuning({"scratch": scratch})["scratch"]["flags"] == []
    md = "\n".join(ablation_report.tuning_lines({"datasets": {"sst2": {"tuning": t}}}))
    assert "| sst2 | scratch | 0.00025 (0.00025, 0.001, 0.004) | 3, 2 / 3 | lr 0.00025 on" in md


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
    assert "Average over the pearson datasets (stsb): full 32.0, no_aux 30.0, scratch 12.0." in md

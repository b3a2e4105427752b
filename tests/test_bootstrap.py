"""model/bootstrap.py: scores on resamples against scikit-learn/SciPy, the interval's
arithmetic by hand, and its coverage of a known difference over many synthetic draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from model import bootstrap as B
from model import metrics as M


def test_scores_on_resamples_match_the_reference_metrics():
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    y, s = rng.normal(size=200), rng.normal(size=200)
    idx = B.rows(200, draws=5, seed=1)
    for metric in ("accuracy", "f1", "mcc"):
        want = [M.classification_metrics(pred[i], gold[i])[metric] for i in idx]
        assert B.score(metric, pred, gold, idx) == pytest.approx(want)
    for metric in ("pearson", "spearman"):
        want = [M.regression_metrics(s[i], y[i])[metric] for i in idx]
        assert B.score(metric, s, y, idx) == pytest.approx(want)
    assert B.score("pearson", np.zeros(200), y) == 0.0  # a constant predictor
    with pytest.raises(ValueError, match="no bootstrap for metric 'bleu'"):
        B.score("bleu", pred, gold)


def test_interval_adds_the_rows_and_the_seeds_by_hand():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, 300)
    a = [np.where(rng.random(300) < p, gold, 1 - gold) for p in (0.7, 0.75, 0.72)]
    b = [np.where(rng.random(300) < p, gold, 1 - gold) for p in (0.6, 0.62, 0.55)]
    g = B.gain("accuracy", gold, a, b, seed=3)
    sa = np.array([100 * np.mean(x == gold) for x in a])
    sb = np.array([100 * np.mean(x == gold) for x in b])
    assert g["mean"] == pytest.approx(sa.mean() - sb.mean())
    idx = B.rows(300, seed=3)  # the same resamples, by hand
    boot = 100 * (np.mean([(x == gold)[idx].mean(1) for x in a], 0)
                  - np.mean([(x == gold)[idx].mean(1) for x in b], 0))  # fmt: skip
    terms = [sa.var(ddof=1) / 3, sb.var(ddof=1) / 3]
    var = boot.var(ddof=1) + sum(terms)
    df = var**2 / sum(t**2 / 2 for t in terms)
    half = stats.t.ppf(0.975, df) * math.sqrt(var)
    assert (g["lo"], g["hi"], g["df"]) == pytest.approx((g["mean"] - half, g["mean"] + half, df))
    assert g["sd_rows"] == pytest.approx(boot.std(ddof=1))
    assert B.gain("accuracy", gold, a[:1], b)["lo"] is None  # 1 seed: the seeds' share unknown
    fixed = B.gain("accuracy", gold, a[:1], b[:1], fixed=True, seed=3)  # the rows only
    assert fixed["df"] == math.inf and fixed["hi"] - fixed["mean"] == pytest.approx(
        1.959964 * fixed["sd_rows"], rel=1e-5
    )


def _coverage(draws: int, seeds: int, rng) -> float:
    """Share of intervals holding the true gain: arm a is right with probability 0.70,
    b with 0.62 (8 points), each seed's model off by a random few points."""
    hits = 0
    for k in range(draws):
        gold = rng.integers(0, 2, 250)

        def model(p, gold=gold):
            q = p if seeds == 1 else p + rng.normal(0, 0.03)
            return np.where(rng.random(250) < q, gold, 1 - gold)

        a, b = [model(0.70) for _ in range(seeds)], [model(0.62) for _ in range(seeds)]
        g = B.gain("accuracy", gold, a, b, fixed=seeds == 1, draws=500, seed=k)
        hits += g["lo"] <= 8.0 <= g["hi"]
    return hits / draws


def test_the_interval_covers_a_known_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    rows_only, with_seeds = _coverage(400, 1, rng), _coverage(300, 3, rng)
    # 400 draws: a true 95% lands in [0.92, 0.98] with probability ~0.99
    assert 0.92 <= rows_only <= 0.98, rows_only
    assert 0.90 <= with_seeds <= 0.99, with_seeds


def test_an_interval_of_the_rows_alone_would_not_cover_the_seeds():
    """Why the seeds' terms are there: without them, 3-seed gains are covered far less."""
    rng = np.random.default_rng(8)
    hits = 0
    for k in range(200):
        gold = rng.integers(0, 2, 250)
        a = [np.where(rng.random(250) < 0.70 + rng.normal(0, 0.05), gold, 1 - gold)
             for _ in range(3)]  # fmt: skip
        b = [np.where(rng.random(250) < 0.62 + rng.normal(0, 0.05), gold, 1 - gold)
             for _ in range(3)]  # fmt: skip
        g = B.gain("accuracy", gold, a, b, fixed=True, draws=300, seed=k)
        hits += g["lo"] <= 8.0 <= g["hi"]
    assert hits / 200 < 0.85

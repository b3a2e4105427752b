"""Intervals for a difference of scores on the same evaluation rows.

The paired bootstrap (Efron & Tibshirani 1993; Koehn 2004 for NLP) resamples the rows
with replacement and scores both systems on each resample, so the noise of which rows
were drawn counts once, and the part both systems share cancels. When each side is the
mean over training seeds, the seeds' variance adds to the rows' (Welch's terms, with
Welch-Satterthwaite degrees of freedom), so the interval covers both sources of noise.

Predictions are class indices (accuracy, f1, mcc) or scores (pearson, spearman).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model import metrics as M
from model.ablation import satterthwaite, t_interval

DRAWS = 2000


def rows(n: int, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """(draws, n) row indices, each row a resample of range(n) with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(draws, n))


def score(metric: str, pred: np.ndarray, gold: np.ndarray, idx: np.ndarray | None = None):
    """`metric` of pred against gold: one float, or one per resample of `idx` (draws, n)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    if idx is None:
        return float(score(metric, pred, gold, np.arange(len(gold))[None])[0])
    if metric == "accuracy":
        return (pred == gold)[idx].mean(axis=1)
    if metric == "pearson":  # vectorised over the resamples; a constant side gives 0
        x, y = pred.astype(float)[idx], gold.astype(float)[idx]
        x, y = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
        den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (x * y).sum(1) / den, 0.0)
    if metric in ("f1", "mcc"):
        fn = M.classification_metrics
    elif metric == "spearman":
        fn = M.regression_metrics
    else:
        raise ValueError(f"no bootstrap for metric {metric!r}")
    return np.array([fn(pred[i], gold[i])[metric] for i in idx])


def gain(
    metric: str,
    gold: np.ndarray,
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    level: float = 0.95,
    fixed: bool = False,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict:
    """mean_s score(a_s) - mean_t score(b_t) in points (x 100), with an interval that covers
    the rows (paired bootstrap) and the seeds (Welch's terms; each side needs 2+ seeds,
    else lo/hi are None). `fixed`: a and b are the models themselves, not samples of a
    training recipe (the gate's product against a constant): the rows' noise only."""
    gold = np.asarray(gold)
    idx = rows(len(gold), draws, seed)
    sa = np.array([score(metric, p, gold) for p in a])
    sb = np.array([score(metric, p, gold) for p in b])
    boot = np.mean([score(metric, p, gold, idx) for p in a], 0) - np.mean(
        [score(metric, p, gold, idx) for p in b], 0
    )
    mean = 100 * float(sa.mean() - sb.mean())
    var_rows = float((100 * boot).var(ddof=1))
    out = {"mean": mean, "lo": None, "hi": None, "level": level, "rows": len(gold),
           "seeds": [len(a), len(b)], "sd_rows": var_rows**0.5}  # fmt: skip
    if fixed:
        terms, dfs = [], []
    elif min(len(sa), len(sb)) < 2:  # the seeds' share of the noise is unknown
        return out
    else:
        terms = [float((100 * s).var(ddof=1)) / len(s) for s in (sa, sb)]
        dfs = [len(sa) - 1, len(sb) - 1]
    var = var_rows + sum(terms)
    ci = t_interval(mean, var, float(satterthwaite(var, terms, dfs)), level)
    return {**out, **ci, "var": var, "sd_seeds": sum(terms) ** 0.5}

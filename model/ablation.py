"""Statistics of the ablation study (GPT-1, Table 5): seeds -> mean ± std, gains with
95% intervals, and the average over datasets.

A gain compares two arms run over independent seeds, so its interval is Welch's
t-interval for a difference of means. The average gain over datasets is the mean of
the per-dataset gains; its variance is the sum of theirs over D², with
Welch-Satterthwaite degrees of freedom: it covers the seeds' noise only. across_datasets
takes the datasets as the unit instead (how much the gain varies from task to task).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarize(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for a single run)."""
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "n": len(v), "values": v.tolist()}


def _var_of_mean(v: np.ndarray) -> float:
    return float(v.var(ddof=1) / len(v))


def _welch(parts: list[tuple[np.ndarray, np.ndarray]], scale: float) -> tuple[float, float]:
    """(variance, degrees of freedom) of scale * sum_d (mean(a_d) - mean(b_d))."""
    terms = [_var_of_mean(x) for a, b in parts for x in (a, b)]
    dofs = [len(x) - 1 for a, b in parts for x in (a, b)]
    var = scale**2 * sum(terms)
    denom = sum(t**2 / d for t, d in zip(terms, dofs, strict=True))
    df = sum(terms) ** 2 / denom if denom > 0 else float("inf")
    return var, df


def _interval(mean: float, var: float, df: float, level: float) -> dict:
    from scipy import stats  # lazily: `genpt status` formats gains without it

    half = float(stats.t.ppf(0.5 + level / 2, df)) * var**0.5 if var > 0 else 0.0
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "df": df, "level": level}


def gain(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """mean(a) - mean(b) with Welch's interval; lo/hi are None with fewer than 2 runs each."""
    return average_gain([(a, b)], level)


def average_gain(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], level: float = 0.95):
    """The mean over datasets of mean(a_d) - mean(b_d), with its interval."""
    parts = [(np.asarray(a, float), np.asarray(b, float)) for a, b in pairs]
    mean = float(np.mean([a.mean() - b.mean() for a, b in parts]))
    if any(min(len(a), len(b)) < 2 for a, b in parts):
        return {"mean": mean, "lo": None, "hi": None, "df": None, "level": level}
    var, df = _welch(parts, 1 / len(parts))
    return _interval(mean, var, df, level)


def across_datasets(gains: dict[str, float], level: float = 0.95) -> dict:
    """The mean of per-dataset gains with datasets as the unit: a t-interval over the D
    gains (D - 1 degrees of freedom), and the mean with each dataset left out in turn.
    Unlike average_gain, it counts how much the gain varies between datasets."""
    v = np.asarray(list(gains.values()), float)
    out = {"mean": float(v.mean()), "lo": None, "hi": None, "df": None, "level": level}
    if len(v) > 1:
        out = _interval(float(v.mean()), float(v.var(ddof=1) / len(v)), len(v) - 1, level)
        out["leave_one_out"] = {n: float(np.delete(v, i).mean()) for i, n in enumerate(gains)}
    return {**out, "n": len(v)}


def format_gain(g: dict | None) -> str:
    """'+4.8 [+2.0, +7.6]' (points with the interval), '+4.8' with one seed, '–' if none."""
    if not g:
        return "–"
    if g.get("lo") is None:
        return f"{g['mean']:+.1f}"
    return f"{g['mean']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}]"

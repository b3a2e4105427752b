"""Statistics of the ablation study (GPT-1, Table 5) over datasets.

Each dataset's gain comes from model/bootstrap.py: the same held-out rows scored by both
arms (paired bootstrap) plus the seeds' variance. Over datasets there are two questions:
- `average`: the gain on *these* datasets. The mean of the per-dataset gains; its
  variance is the sum of theirs over D², with Welch-Satterthwaite degrees of freedom.
- `across_datasets`: the gain on a dataset like these. The datasets are the unit: a
  t-interval over the D gains, and the mean with each dataset left out in turn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The primary claim (gate.claim) -> the report's interval of the average gain it reads
CLAIMS = {"pooled": "gain_pretraining", "datasets": "gain_pretraining_across_datasets"}


def summarize(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; None for a single run)."""
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if len(v) > 1 else None
    return {"mean": float(v.mean()), "std": std, "n": len(v), "values": v.tolist()}


def satterthwaite(var: float, terms: Sequence[float], dfs: Sequence[float]) -> float:
    """Welch-Satterthwaite degrees of freedom of a variance `var` whose parts `terms` have
    `dfs` degrees of freedom (any other part of it: infinitely many)."""
    denom = sum(t**2 / d for t, d in zip(terms, dfs, strict=True))
    return var**2 / denom if denom > 0 else float("inf")


def t_interval(mean: float, var: float, df: float, level: float) -> dict:
    """mean ± Student's t quantile x sqrt(var)."""
    from scipy import stats  # lazily: `genpt status` formats gains without it

    half = float(stats.t.ppf(0.5 + level / 2, df)) * var**0.5 if var > 0 else 0.0
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "df": df, "level": level}


def average(gains: Sequence[dict], level: float = 0.95) -> dict:
    """The mean of per-dataset gains (each with `var` and `df`, as bootstrap.gain gives),
    with its interval; lo/hi are None when any dataset has none."""
    mean = float(np.mean([g["mean"] for g in gains]))
    if any(g.get("lo") is None for g in gains):
        return {"mean": mean, "lo": None, "hi": None, "df": None, "level": level}
    terms = [g["var"] / len(gains) ** 2 for g in gains]
    df = satterthwaite(sum(terms), terms, [g["df"] for g in gains])
    return t_interval(mean, sum(terms), df, level)


def across_datasets(gains: dict[str, float], level: float = 0.95) -> dict:
    """The mean of per-dataset gains with datasets as the unit: a t-interval over the D
    gains (D - 1 degrees of freedom), and the mean with each dataset left out in turn."""
    v = np.asarray(list(gains.values()), float)
    out = {"mean": float(v.mean()), "lo": None, "hi": None, "df": None, "level": level}
    if len(v) > 1:
        out = t_interval(float(v.mean()), float(v.var(ddof=1) / len(v)), len(v) - 1, level)
        out["leave_one_out"] = {n: float(np.delete(v, i).mean()) for i, n in enumerate(gains)}
    return {**out, "n": len(v)}


def format_gain(g: dict | None) -> str:
    """'+4.8 [+2.0, +7.6]' (points with the interval), '+4.8' with none, '–' if no gain."""
    if not g:
        return "–"
    if g.get("lo") is None:
        return f"{g['mean']:+.1f}"
    return f"{g['mean']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}]"


def labels_needed(budgets: Sequence[float], scores: Sequence[float], target: float):
    """The label budget at which a learning curve (its mean score at each budget, budgets
    ascending) first reaches `target`, interpolated linearly in log(budget); None when it
    stays below it up to its largest budget."""
    b, s = np.log(np.asarray(budgets, float)), np.asarray(scores, float)
    for i in range(len(b)):
        if s[i] >= target:
            if i == 0:
                return float(budgets[0])
            w = (target - s[i - 1]) / (s[i] - s[i - 1])
            return float(np.exp(b[i - 1] + w * (b[i] - b[i - 1])))
    return None

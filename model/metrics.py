"""Evaluation metrics of the paper's benchmarks (GLUE-style), from scikit-learn and SciPy.

Both are imported where used: each costs about half a second at the start of a stage
process, and most stage processes need one of them or neither."""

from __future__ import annotations

import numpy as np


def classification_metrics(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and Matthews correlation of integer predictions."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, pred)),
    }


def regression_metrics(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation (STS-B style)."""
    from scipy.stats import pearsonr, spearmanr

    if np.std(pred) == 0 or np.std(gold) == 0:
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": float(pearsonr(pred, gold)[0]), "spearman": float(spearmanr(pred, gold)[0])}


def compute(logits: np.ndarray, gold: np.ndarray, regression: bool) -> dict[str, float]:
    if regression:
        return regression_metrics(logits.reshape(-1), gold.astype(float))
    return classification_metrics(logits.argmax(-1), gold.astype(int))


def constant_prediction(gold: np.ndarray, regression: bool) -> int | float:
    """The trivial baseline's one prediction, the best constant on the rows scored: their
    most common label (or choice index); for regression their mean score (any constant
    correlates 0)."""
    if regression:
        return float(np.mean(gold))
    values, counts = np.unique(gold, return_counts=True)
    return int(values[counts.argmax()])


def trivial_baseline(gold: np.ndarray, regression: bool) -> dict:
    """Every metric of the best constant predictor on the rows scored (`gold`)."""
    if regression:  # a constant has no correlation with anything
        return {"pearson": 0.0, "spearman": 0.0}
    return classification_metrics(np.full(len(gold), constant_prediction(gold, False)), gold)

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


def confusion(logits: np.ndarray, gold: np.ndarray, n: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(gold, logits.argmax(-1), labels=list(range(n)))


def constant_prediction(train_gold: np.ndarray, regression: bool) -> int | float:
    """The trivial baseline's one prediction: the most common training label (or choice
    index); for regression the mean training score (any constant correlates 0)."""
    if regression:
        return float(np.mean(train_gold))
    values, counts = np.unique(train_gold, return_counts=True)
    return int(values[counts.argmax()])


def majority_baseline(train_gold: np.ndarray, dev_gold: np.ndarray) -> float:
    """Accuracy on dev of always predicting the most common training label."""
    return float(np.mean(dev_gold == constant_prediction(train_gold, False)))


def trivial_baseline(train_gold: np.ndarray, dev_gold: np.ndarray, regression: bool) -> dict:
    """Every metric of a constant predictor: the most common training label (or choice
    index); for regression, any constant score (correlations 0)."""
    if regression:  # a constant has no correlation with anything
        return {"pearson": 0.0, "spearman": 0.0}
    return classification_metrics(
        np.full(len(dev_gold), constant_prediction(train_gold, False)), dev_gold
    )

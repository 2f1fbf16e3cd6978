"""Holdout metrics a lead-scoring team reads: ranking quality and capture in the top decile."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)


def top_decile_capture(y: np.ndarray, score: np.ndarray) -> float:
    """Share of all converted records found in the 10% with the highest scores.

    Ties are broken by position (stable sort), so the figure is reproducible.
    """
    y = np.asarray(y)
    if y.sum() == 0:
        return float("nan")
    n_top = max(1, int(np.ceil(0.1 * len(y))))
    order = np.argsort(-np.asarray(score), kind="stable")
    return float(y[order[:n_top]].sum() / y.sum())


def evaluate(y: np.ndarray, score: np.ndarray, task: str = "classifier") -> dict[str, float]:
    """Metrics of one score vector on labelled rows. Probabilities get the proper scoring
    rules too; a decision function only the ranking metrics; a regressor its errors."""
    y = np.asarray(y, dtype="float64")
    score = np.asarray(score, dtype="float64")
    out: dict[str, float] = {"rows": float(len(y))}
    if task == "regressor":
        out["rmse"] = float(np.sqrt(mean_squared_error(y, score)))
        out["mae"] = float(mean_absolute_error(y, score))
        out["r2"] = float(r2_score(y, score)) if len(y) > 1 else float("nan")
        return out
    both = len(np.unique(y)) == 2
    out["roc_auc"] = float(roc_auc_score(y, score)) if both else float("nan")
    out["top_decile_capture"] = top_decile_capture(y, score)
    out["positive_rate"] = float(y.mean()) if len(y) else float("nan")
    if task == "classifier":
        p = np.clip(score, 0.0, 1.0)
        out["log_loss"] = float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan")
        out["brier"] = float(brier_score_loss(y, p)) if len(y) else float("nan")
    return out

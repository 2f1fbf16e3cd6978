"""Holdout metrics a lead-scoring team reads: ranking quality and capture in the top decile."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


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


def evaluate(y: np.ndarray, score: np.ndarray) -> dict:
    y = np.asarray(y)
    return {
        "roc_auc": float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan"),
        "top_decile_capture": top_decile_capture(y, score),
        "positive_rate": float(y.mean()),
        "rows": int(len(y)),
    }

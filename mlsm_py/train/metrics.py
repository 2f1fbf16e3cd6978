"""Holdout metrics a lead-scoring team reads: ranking quality and capture in the top decile."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

# The top shares capture and lift are reported at (percent of records called first).
TOP_SHARES = (1, 5, 10, 20)


def capture(y: np.ndarray, score: np.ndarray, share: float) -> float:
    """Share of all converted records found in the `share` (0.1 = 10%) with the highest
    scores. Ties are broken by position (stable sort), so the figure is reproducible."""
    y = np.asarray(y)
    if y.sum() == 0:
        return float("nan")
    n_top = max(1, int(np.ceil(share * len(y))))
    order = np.argsort(-np.asarray(score), kind="stable")
    return float(y[order[:n_top]].sum() / y.sum())


def top_decile_capture(y: np.ndarray, score: np.ndarray) -> float:
    return capture(y, score, 0.1)


def bins(y: np.ndarray, score: np.ndarray, task: str) -> list[dict]:
    """The tables an analyst plots: lift per score decile (10 = the highest scores, equal
    numbers of records by rank) and, for probabilities, a 10-bin calibration table (predicted
    [0, 0.1), ..., [0.9, 1]: mean predicted against observed rate)."""
    y = np.asarray(y, dtype="float64")
    s = np.asarray(score, dtype="float64")
    if task == "regressor" or len(y) == 0:
        return []
    out = []
    rate = y.mean()
    order = np.argsort(s, kind="stable")
    groups = np.array_split(order, 10)
    for i, idx in enumerate(groups, start=1):
        if len(idx) == 0:
            continue
        r = y[idx].mean()
        out.append(
            {
                "table_name": "lift_by_decile",
                "bin": i,
                "lower": float(s[idx].min()),
                "upper": float(s[idx].max()),
                "rows": len(idx),
                "positives": float(y[idx].sum()),
                "mean_score": float(s[idx].mean()),
                "observed_rate": float(r),
                "lift": float(r / rate) if rate > 0 else float("nan"),
            }
        )
    if task == "classifier":
        which = np.minimum((np.clip(s, 0, 1) * 10).astype(int), 9)
        for i in range(10):
            idx = which == i
            n = int(idx.sum())
            out.append(
                {
                    "table_name": "calibration",
                    "bin": i + 1,
                    "lower": i / 10,
                    "upper": (i + 1) / 10,
                    "rows": n,
                    "positives": float(y[idx].sum()) if n else 0.0,
                    "mean_score": float(s[idx].mean()) if n else float("nan"),
                    "observed_rate": float(y[idx].mean()) if n else float("nan"),
                    "lift": float("nan"),
                }
            )
    return out


def score_deciles(score: np.ndarray, points: np.ndarray) -> list[dict]:
    """The holdout's share of records per decile of the fit's own bands (about 0.1 each; ties
    move it): what the score-drift check compares each build's scores with."""
    from mlsm_py.train.summary import Bands, place

    pct = place(np.asarray(score, dtype="float64"), Bands.of(points))
    pct = pct[~np.isnan(pct)]
    dec = np.where(pct >= 90, 10, np.floor(pct / 10).astype(int) + 1)
    counts = np.bincount(dec, minlength=11)[1:]
    return [
        {
            "table_name": "score_deciles",
            "bin": i + 1,
            "lower": None,
            "upper": None,
            "rows": int(n),
            "positives": None,
            "mean_score": None,
            "observed_rate": float(n / max(len(pct), 1)),
            "lift": None,
        }
        for i, n in enumerate(counts)
    ]


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
    out["pr_auc"] = float(average_precision_score(y, score)) if both else float("nan")
    rate = float(y.mean()) if len(y) else float("nan")
    for k in TOP_SHARES:
        c = capture(y, score, k / 100)
        out[f"capture_at_{k}"] = c
        out[f"lift_at_{k}"] = c / (k / 100) if c == c else float("nan")
    out["positive_rate"] = rate
    if task == "classifier":
        p = np.clip(score, 0.0, 1.0)
        out["log_loss"] = float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan")
        out["brier"] = float(brier_score_loss(y, p)) if len(y) else float("nan")
    return out

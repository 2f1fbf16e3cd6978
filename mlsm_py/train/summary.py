"""Summary rules in Python, exactly as the `mlsm.select_winner` macro applies them in SQL, so a
summary model is evaluated on the holdout like any model before it publishes a list.

Percentiles put every member on one scale: a fit's score is placed among the 101 quantiles of
its own holdout scores (its breakpoints, stored in the registry at training), interpolated
linearly inside a band, 0 below the lowest and 100 at or above the highest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mlsm_py.train.metrics import top_decile_capture

QUANTILES = np.arange(101) / 100.0
# The band below a fit's lowest breakpoint: everything there is percentile 0.
FLOOR_BAND = -1
FLOOR = -1e308


def breakpoints(scores: np.ndarray) -> np.ndarray:
    """The 101 quantiles (0, 1, ..., 100 %) of a fit's valid scores (its holdout's)."""
    s = np.asarray(scores, dtype="float64")
    s = s[np.isfinite(s)]
    if len(s) == 0:
        raise ValueError("no finite training score to take breakpoints from")
    return np.quantile(s, QUANTILES)


@dataclass(frozen=True)
class Bands:
    """A fit's breakpoints as the warehouse's `score_bands` holds them: one band per distinct
    breakpoint value (the highest percentile at that value), plus the floor band."""

    band: np.ndarray  # int
    lower: np.ndarray
    upper: np.ndarray  # NaN: no upper bound (the top band)

    @classmethod
    def of(cls, points: Sequence[float]) -> Bands:
        q = np.asarray(points, dtype="float64")
        values, last = [], []
        for i, v in enumerate(q):
            if values and values[-1] == v:
                last[-1] = i
            else:
                values.append(v)
                last.append(i)
        lower = np.array([FLOOR, *values])
        upper = np.array([values[0], *values[1:], np.nan])
        return cls(np.array([FLOOR_BAND, *last]), lower, upper)


def place(scores: np.ndarray, bands: Bands) -> np.ndarray:
    """Percentile (0..100) of each score; NaN for NaN scores. Same arithmetic as the SQL."""
    s = np.asarray(scores, dtype="float64")
    out = np.full(len(s), np.nan)
    ok = ~np.isnan(s)
    idx = np.searchsorted(bands.lower, s[ok], side="right") - 1
    band = bands.band[idx].astype("float64")
    lower, upper = bands.lower[idx], bands.upper[idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = band + (s[ok] - lower) / (upper - lower)
    out[ok] = np.where(band == FLOOR_BAND, 0.0, np.where(np.isnan(upper), band, inside))
    return out


@dataclass(frozen=True)
class Picked:
    """Per record: the winning member's index (-1: none), its score and percentile."""

    member: np.ndarray
    score: np.ndarray
    percentile: np.ndarray

    def order_value(self, rule: str) -> np.ndarray:
        """What the call list sorts by, as one vector (higher = call first)."""
        if rule in ("highest_score", "mean_score"):
            return self.score
        # percentile first, score breaks ties: dense ranks of the pairs (equal pairs tie)
        out = np.full(len(self.score), np.nan)
        ok = ~np.isnan(self.percentile)
        pairs = np.column_stack([self.percentile[ok], np.nan_to_num(self.score[ok], nan=-np.inf)])
        if len(pairs):
            out[ok] = np.unique(pairs, axis=0, return_inverse=True)[1].ravel()
        return out


def pick(
    rule: str,
    order: Sequence[str],
    scores: Mapping[str, np.ndarray],
    percentiles: Mapping[str, np.ndarray],
) -> Picked:
    """Apply a summary rule to aligned member score vectors. `order` is the candidates in
    priority order (ties go to the earlier one, as in the SQL); NaN scores never win."""
    n = len(next(iter(scores.values())))
    S = np.column_stack([np.asarray(scores[m], dtype="float64") for m in order])
    P = np.column_stack([np.asarray(percentiles[m], dtype="float64") for m in order])
    valid = ~np.isnan(S)
    anyvalid = valid.any(axis=1)
    if rule == "mean_score":
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(valid, S, np.nan), axis=1) if n else np.zeros(0)
        return Picked(np.full(n, -1), np.where(anyvalid, mean, np.nan), np.full(n, np.nan))
    if rule == "highest_score":
        value = np.where(valid, S, -np.inf)
    elif rule == "highest_percentile":
        value = np.where(valid, P, -np.inf)
    elif rule in ("priority", "best_member"):
        value = np.where(valid, -np.arange(len(order), dtype="float64"), -np.inf)
    else:
        raise ValueError(f"rule {rule!r} has no Python form")
    member = np.where(anyvalid, np.argmax(value, axis=1), -1)  # argmax: first max = priority
    rows = np.arange(n)
    safe = np.maximum(member, 0)
    return Picked(
        member,
        np.where(anyvalid, S[rows, safe], np.nan),
        np.where(anyvalid, P[rows, safe], np.nan),
    )


def ranking_metrics(y: np.ndarray, value: np.ndarray) -> dict[str, float]:
    """ROC AUC and top-10% capture of a call order; records without a value go last."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype="float64")
    v = np.asarray(value, dtype="float64")
    known = v[~np.isnan(v)]
    v = np.where(np.isnan(v), (known.min() - 1.0) if len(known) else 0.0, v)
    both = len(np.unique(y)) == 2
    return {
        "rows": float(len(y)),
        "roc_auc": float(roc_auc_score(y, v)) if both else float("nan"),
        "top_decile_capture": top_decile_capture(y, v),
    }

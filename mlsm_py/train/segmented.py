"""Fan-out: a segmented model's global fit and one fit per segment level, from one read of
its rows. A level below the declared minimum is left to the global fit (the fallback); a
level whose training fails is reported and skipped, and the run goes on with the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlsm_py import segments
from mlsm_py.estimator import score_vector
from mlsm_py.spec import Model
from mlsm_py.train.metrics import score_deciles
from mlsm_py.train.trainer import Fit, Windows, fit_windows, read_windows


@dataclass
class Trained:
    """What one training run of a definition gave: its fits, global first."""

    model: Model
    fits: list[Fit]
    fallback: dict[str, str] = field(default_factory=dict)  # level -> why the global scores it
    failed: dict[str, str] = field(default_factory=dict)  # level -> why its training failed

    @property
    def segment_fits(self) -> list[Fit]:
        return [f for f in self.fits if f.segment is not None]


def _classes(y: Any) -> int:
    y = np.asarray(y, dtype="float64")
    return len(np.unique(y[~np.isnan(y)]))


def _why_not(m: Model, w: Windows) -> str | None:
    """Why a level gets no fit of its own (None: it gets one)."""
    y = w.train[m.target].to_numpy(dtype="float64")
    positives = int((y > 0).sum())
    if len(y) < m.segment_min_rows:
        return f"{len(y):,} training rows < segment_min_rows {m.segment_min_rows:,}"
    if positives < m.segment_min_positives:
        return (
            f"{positives:,} positive training rows < segment_min_positives "
            f"{m.segment_min_positives:,}"
        )
    return None


def _why_failed(m: Model, w: Windows) -> str | None:
    """What makes a level's fit impossible though it has rows enough."""
    if len(w.holdout) == 0:
        return "no holdout rows: the segment's fit cannot be judged"
    if m.segment_min_positives > 0:
        if _classes(w.train[m.target]) < 2:
            return "one class only in its training rows"
        if _classes(w.holdout[m.target]) < 2:
            return "one class only in its holdout rows: ROC AUC is undefined"
    return None


def train_all(con: Any, m: Model) -> Trained:
    """The global fit and, for a segmented model, a fit per level found in training."""
    w = read_windows(con, m)
    out = Trained(m, [fit_windows(m, w)])
    if not m.segments:
        return out
    per_frame = [segments.labels(df, m) for df in w.frames]
    levels = sorted({v for v in per_frame[0] if v is not None})
    for level in levels:
        sub = Windows(
            w.bounds,
            *(
                df[(lab == level).to_numpy()].reset_index(drop=True)
                for df, lab in zip(w.frames, per_frame, strict=True)
            ),
            w.immature,
        )
        why = _why_not(m, sub)
        if why is not None:
            out.fallback[level] = why
            continue
        why = _why_failed(m, sub)
        if why is not None:
            out.failed[level] = why
            continue
        try:
            out.fits.append(fit_windows(m, sub, level))
        except Exception as e:  # one market's failure must not stop the other 20
            out.failed[level] = (str(e).splitlines() or [type(e).__name__])[0][:300]
    _fallback_reference(out, per_frame[2].to_numpy())
    return out


def _fallback_reference(t: Trained, holdout_levels: np.ndarray) -> None:
    """A segmented model's global fit scores only the records no segment fit takes, so its
    score-drift reference is its holdout deciles on those rows, not on all rows: a fallback
    population of small countries scores unlike the whole, and would fail the check."""
    glob = t.fits[0]
    rest = ~np.isin(holdout_levels, [f.segment for f in t.segment_fits])
    if not rest.any():
        return
    scores = score_vector(glob.estimator, glob.holdout.X[rest])
    kept = [b for b in glob.bins if b["table_name"] != "score_deciles"]
    glob.bins = kept + score_deciles(scores, glob.breakpoints)

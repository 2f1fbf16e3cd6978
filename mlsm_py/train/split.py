"""Time-gapped split: train on older records, evaluate on the newest, with a gap between."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mlsm_py.errors import SpecError
from mlsm_py.spec import TimeSplit


@dataclass(frozen=True)
class SplitBounds:
    train_before: datetime
    holdout_from: datetime


def bounds(table, split: TimeSplit) -> SplitBounds:
    """`table` is an ibis table; the bounds come from the newest record's timestamp."""
    if split.column not in table.columns:
        raise SpecError(f"time split column {split.column!r} is not in the feature relation")
    newest = table[split.column].max().execute()
    if newest is None:
        raise SpecError("the feature relation is empty: nothing to train on")
    holdout_from = newest - timedelta(days=split.holdout_days)
    return SplitBounds(holdout_from - timedelta(days=split.gap_days), holdout_from)

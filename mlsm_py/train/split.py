"""Time-gapped split on matured labels: train on older records, evaluate on the newest records
whose outcome is known, with a gap between."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mlsm_py.spec import TimeSplit


@dataclass(frozen=True)
class SplitBounds:
    as_of: datetime  # the newest record: the data's as-of time
    matured_until: datetime  # records at or before this have a known label
    holdout_from: datetime  # holdout: holdout_from <= t <= matured_until
    train_before: datetime  # training (and validation): t < train_before
    validation_from: datetime | None = None  # validation: validation_from <= t < train_before

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items() if v is not None}


def bounds(as_of: datetime, split: TimeSplit) -> SplitBounds:
    matured = as_of - timedelta(days=split.label_ready_after_days)
    holdout_from = matured - timedelta(days=split.holdout_days)
    train_before = holdout_from - timedelta(days=split.gap_days)
    validation_from = (
        train_before - timedelta(days=split.validation_days) if split.validation_days else None
    )
    return SplitBounds(as_of, matured, holdout_from, train_before, validation_from)

"""Python-side check of the `fields` contracts (dbt checks the same rules in the warehouse)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlsm_py.errors import ContractError
from mlsm_py.spec import Field


def check_frame(df: pd.DataFrame, fields: Sequence[Field], relation: str) -> None:
    """Raise ContractError on the first broken rule, naming column, value and rule."""
    for f in fields:
        if f.name not in df.columns:
            raise ContractError(f"{relation}: column {f.name!r} is missing (declared in fields)")
        col = df[f.name]
        missing = col.isna()
        if not f.nullable and missing.any():
            raise ContractError(
                f"{relation}.{f.name}: {int(missing.sum())} NULL values; rule: not nullable"
            )
        present = col[~missing]
        if f.type == "category":
            if f.levels is not None:
                bad = present[~present.astype(str).isin(f.levels)]
                if len(bad):
                    raise ContractError(
                        f"{relation}.{f.name}: value {bad.iloc[0]!r} is not an accepted level "
                        f"({len(bad)} rows); rule: one of {list(f.levels)}"
                    )
            continue
        values = pd.to_numeric(present, errors="coerce")
        if values.isna().any():
            bad = present[values.isna()].iloc[0]
            raise ContractError(f"{relation}.{f.name}: value {bad!r} is not a number")
        arr = values.to_numpy(dtype="float64")
        if not np.isfinite(arr).all():
            bad = arr[~np.isfinite(arr)][0]
            raise ContractError(
                f"{relation}.{f.name}: value {bad!r} ({int((~np.isfinite(arr)).sum())} rows); "
                "rule: a finite number (not NaN, +inf or -inf)"
            )
        if f.type == "integer" and len(arr) and not np.all(np.mod(arr, 1) == 0):
            bad = arr[np.mod(arr, 1) != 0][0]
            raise ContractError(f"{relation}.{f.name}: value {bad!r} is not an integer")
        for rule, mask in (
            (f"min {f.min}", arr < f.min if f.min is not None else None),
            (f"max {f.max}", arr > f.max if f.max is not None else None),
        ):
            if mask is not None and mask.any():
                raise ContractError(
                    f"{relation}.{f.name}: value {arr[mask][0]!r} breaks the rule {rule} "
                    f"({int(mask.sum())} rows)"
                )

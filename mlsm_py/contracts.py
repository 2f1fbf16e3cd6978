"""Python-side check of the `fields` contracts (dbt checks the same rules in the warehouse)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsm_py.errors import ContractError
from mlsm_py.spec import Field


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


@dataclass(frozen=True)
class Rule:
    """One rule of a field's contract, as words (the quarantine table's `rule`) and its action:
    error (blocks publication), quarantine (holds the row back) or pass."""

    field: Field
    kind: str  # not_null | finite | range | levels
    words: str
    action: str


def rules_of(f: Field) -> list[Rule]:
    on = "quarantine" if f.severity == "quarantine" else "error"
    out = []
    if not f.nullable:
        out.append(Rule(f, "not_null", f"{f.name} must not be NULL", on))
    if f.type == "double":
        out.append(
            Rule(f, "finite", f"{f.name} must be a finite number (not NaN, +inf or -inf)", on)
        )
    if f.min is not None or f.max is not None:
        parts = [f">= {_num(f.min)}"] if f.min is not None else []
        parts += [f"<= {_num(f.max)}"] if f.max is not None else []
        out.append(Rule(f, "range", f"{f.name} must be a number {' and '.join(parts)}", on))
    if f.levels is not None:
        action = {"block": "error"}.get(f.levels_action, f.levels_action)
        words = f"{f.name} must be one of: {', '.join(f.levels)}"
        out.append(Rule(f, "levels", words, action))
    return out


def broken(df: pd.DataFrame, rule: Rule) -> np.ndarray:
    """Rows of `df` breaking `rule`, as the quarantine model's SQL finds them."""
    col = df[rule.field.name]
    if rule.kind == "not_null":
        return col.isna().to_numpy()
    if rule.kind == "levels":
        return (col.notna() & ~col.astype(str).isin(rule.field.levels)).to_numpy()
    x = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64")
    present = col.notna().to_numpy()
    if rule.kind == "finite":
        return present & ~np.isfinite(x)
    f = rule.field
    with np.errstate(invalid="ignore"):
        low = x < f.min if f.min is not None else np.zeros(len(x), bool)
        high = x > f.max if f.max is not None else np.zeros(len(x), bool)
    return present & (np.isnan(x) | low | high)


def quarantined(df: pd.DataFrame, fields: Sequence[Field]) -> np.ndarray:
    """Rows a quarantine rule holds back: never trained on, never scored."""
    mask = np.zeros(len(df), dtype=bool)
    for f in fields:
        if f.name in df.columns:
            for r in rules_of(f):
                if r.action == "quarantine":
                    mask |= broken(df, r)
    return mask


def check_frame(df: pd.DataFrame, fields: Sequence[Field], relation: str) -> None:
    """Raise ContractError on the first broken rule, naming column, value and rule. Rows a
    quarantine holds back are expected to be gone already (`quarantined`)."""
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
            if f.levels is not None and f.levels_action != "pass":
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

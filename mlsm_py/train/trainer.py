"""Fit one model on its feature relation, read from the warehouse through ibis."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from mlsm_py.contracts import check_frame
from mlsm_py.errors import SpecError
from mlsm_py.frames import model_frame
from mlsm_py.spec import Model
from mlsm_py.train.metrics import evaluate
from mlsm_py.train.split import bounds


@dataclass
class Fit:
    model: Model
    estimator: Any
    metrics: dict
    holdout: pd.DataFrame
    train_rows: int
    data_hash: str

    @property
    def estimator_name(self) -> str:
        est = self.estimator
        if hasattr(est, "steps"):
            return " > ".join(type(s).__name__ for _, s in est.steps)
        return type(est).__name__


def input_types(model: Model) -> dict[str, str]:
    return {f.name: ("string" if f.type == "category" else "double") for f in model.fields}


def scores_of(estimator: Any, X: pd.DataFrame) -> np.ndarray:
    if hasattr(estimator, "predict_proba"):
        return estimator.predict_proba(X)[:, 1]
    return np.asarray(estimator.predict(X), dtype="float64")


def _hash(df: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()


def train(con, model: Model) -> Fit:
    """`con` is an ibis connection to the warehouse."""
    table = con.table(model.features)
    needed = [model.key, model.split.column, model.target, *model.field_names]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise SpecError(
            f"model {model.name!r}: columns {missing} are not in relation {model.features!r}"
        )
    b = bounds(table, model.split)
    time_col = table[model.split.column]
    cols = [model.key, model.target, *model.field_names]
    train_df = table.filter(time_col < b.train_before).select(cols).order_by(model.key).to_pandas()
    hold_df = table.filter(time_col >= b.holdout_from).select(cols).order_by(model.key).to_pandas()
    for name, df in (("training", train_df), ("holdout", hold_df)):
        if len(df) == 0:
            raise SpecError(
                f"model {model.name!r}: the {name} window of the time split is empty "
                f"(holdout_days={model.split.holdout_days}, gap_days={model.split.gap_days})"
            )
        check_frame(df, model.fields, model.features)
        if df[model.target].isna().any():
            raise SpecError(f"model {model.name!r}: target {model.target!r} has NULL values")
    types = input_types(model)
    X_train = model_frame(train_df, types)
    X_hold = model_frame(hold_df, types)
    estimator = clone(model.estimator).fit(X_train, train_df[model.target].to_numpy())
    metrics = evaluate(hold_df[model.target].to_numpy(), scores_of(estimator, X_hold))
    metrics["train_before"] = b.train_before.isoformat()
    metrics["holdout_from"] = b.holdout_from.isoformat()
    return Fit(model, estimator, metrics, X_hold, len(train_df), _hash(train_df))

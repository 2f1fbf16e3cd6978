"""Generated data sets of shapes the demo does not have, for bench/score_throughput.py.

The route choice and the SQL layout were first tuned on the demo's leads; these check them on
data they were not fitted to. Each set is a DuckDB table `<name>` keyed by `id`, with a binary
`target`, written in one go from numpy (seeded, so two runs score the same rows):

numeric20  20 double features of mixed scales and offsets; three of them ~2% NULL. The target
           depends on interactions and thresholds, so trees grow to their default size.
mixed60    40 numeric features (normal, log-normal heavy tails, integer counts; five ~5% NULL)
           and 20 text categories of 3 to 40 levels (~3% NULL each).

`models(name)` gives every family with library defaults for that shape: scikit-learn families
behind a median imputer (and, for mixed60, a one-hot encoder of the categories); LightGBM on
its own (it takes NULLs, and on mixed60 the categories as pandas `category` columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from xgboost import XGBClassifier

KEY = "id"
TARGET = "target"


@dataclass(frozen=True)
class DataSet:
    name: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def types(self) -> dict[str, str]:
        return {**{c: "double" for c in self.numeric}, **{c: "string" for c in self.categorical}}


NUMERIC20 = DataSet("numeric20", tuple(f"x{i:02d}" for i in range(20)), ())
MIXED60 = DataSet(
    "mixed60", tuple(f"n{i:02d}" for i in range(40)), tuple(f"c{i:02d}" for i in range(20))
)
SETS = {s.name: s for s in (NUMERIC20, MIXED60)}


def generate(ds: DataSet, rows: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {KEY: np.arange(rows, dtype=np.int64)}
    num = np.empty((rows, len(ds.numeric)))
    for j, _ in enumerate(ds.numeric):
        kind = j % 4 if ds is MIXED60 else 0
        if kind == 1:
            num[:, j] = rng.lognormal(1.0, 1.2, rows)  # heavy right tail
        elif kind == 2:
            num[:, j] = rng.poisson(3 + j % 7, rows)  # counts
        else:
            num[:, j] = rng.normal(rng.uniform(-50, 50), rng.uniform(0.5, 200), rows)
    z = np.zeros(rows)
    std = (num - num.mean(axis=0)) / num.std(axis=0)
    for j in range(0, len(ds.numeric) - 1, 2):
        z += 0.6 * np.tanh(std[:, j] * std[:, j + 1]) + 0.4 * (std[:, j] > 0.5 * (j % 3 - 1))
    levels: list[np.ndarray] = []
    for k, _ in enumerate(ds.categorical):
        n_levels = 3 + (k * 37) % 38
        idx = rng.integers(0, n_levels, rows)
        effect = rng.normal(0, 0.5, n_levels)
        z += effect[idx]
        levels.append(idx)
    z = (z - z.mean()) / z.std() * 1.5 - 1.0
    target = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.int64)
    nullable = [3, 7, 11] if ds is NUMERIC20 else [0, 5, 10, 15, 20]
    share = 0.02 if ds is NUMERIC20 else 0.05
    for j, name in enumerate(ds.numeric):
        mask = rng.random(rows) < share if j in nullable else None
        cols[name] = pa.array(num[:, j], pa.float64(), mask=mask)
    for k, name in enumerate(ds.categorical):
        words = np.array([f"{name}_L{i}" for i in range(levels[k].max() + 1)], dtype=object)
        values = words[levels[k]]
        values[rng.random(rows) < 0.03] = None
        cols[name] = pa.array(values, pa.string())
    cols[TARGET] = target
    return pa.table(cols)


def training_frame(table: pa.Table, ds: DataSet, rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The first `rows` rows as the frame a data scientist fits on: NaN for missing numbers,
    None for missing text (what `frames.model_frame` gives the library when scoring)."""
    part = table.slice(0, rows)
    X = pd.DataFrame({c: part.column(c).to_numpy(zero_copy_only=False) for c in ds.features})
    for c in ds.numeric:
        X[c] = X[c].astype("float64")
    for c in ds.categorical:
        X[c] = X[c].astype(object).where(X[c].notna(), np.nan)
    return X, part.column(TARGET).to_numpy()


def _sklearn(ds: DataSet, final: Any, scale: bool = False) -> Pipeline:
    scaler = [StandardScaler()] if scale else []
    if not ds.categorical:
        return make_pipeline(SimpleImputer(strategy="median"), *scaler, final)
    num = make_pipeline(SimpleImputer(strategy="median"), *scaler)
    cat = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    prep = ColumnTransformer([("num", num, list(ds.numeric)), ("cat", cat, list(ds.categorical))])
    return Pipeline([("prep", prep), ("model", final)])


def models(ds: DataSet) -> dict[str, Any]:
    """name -> unfitted estimator; every family with its library's defaults (n_jobs=2 where
    the library has it, so every route gets the machine's two cores)."""
    return {
        "logreg": _sklearn(ds, LogisticRegression(max_iter=1000), scale=True),
        "lgbm200": LGBMClassifier(n_estimators=200, n_jobs=2, verbose=-1, random_state=7),
        "sk_gb100": _sklearn(ds, GradientBoostingClassifier(random_state=7)),
        "rf100_d8": _sklearn(
            ds, RandomForestClassifier(n_estimators=100, max_depth=8, n_jobs=2, random_state=7)
        ),
        "hgb": _sklearn(ds, HistGradientBoostingClassifier(random_state=7)),
        "xgb100": _sklearn(ds, XGBClassifier(n_jobs=2, random_state=7)),
    }


def lightgbm_frame(X: pd.DataFrame, ds: DataSet) -> pd.DataFrame:
    """LightGBM takes the categories as pandas `category` columns (its own categorical splits)."""
    if not ds.categorical:
        return X
    X = X.copy()
    for c in ds.categorical:
        X[c] = pd.Categorical(X[c].where(X[c].notna(), None))
    return X

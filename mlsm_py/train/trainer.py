"""Fit one model on the matured rows of its feature relation, read from the warehouse."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlglot import exp

from mlsm_py.checks.drift import reference
from mlsm_py.contracts import check_frame, quarantined
from mlsm_py.errors import ContractError, SpecError
from mlsm_py.estimator import input_types, score_vector, task_of
from mlsm_py.frames import model_frame
from mlsm_py.spec import Model
from mlsm_py.train import fitting
from mlsm_py.train.metrics import bins, evaluate, score_deciles
from mlsm_py.train.split import SplitBounds, bounds
from mlsm_py.train.summary import breakpoints


@dataclass
class Holdout:
    """The newest matured rows: what champion and challenger are both judged on."""

    X: pd.DataFrame
    y: np.ndarray
    bounds: SplitBounds


@dataclass
class Fit:
    model: Model
    estimator: Any
    task: str
    metrics: dict[str, float]
    holdout: Holdout
    train_rows: int
    immature_rows: int
    data_hash: str
    # 101 quantiles of the fit's holdout scores: its percentile scale (registry)
    breakpoints: np.ndarray
    bins: list = field(default_factory=list)  # holdout lift per decile, calibration (registry)
    reference: list = field(default_factory=list)  # training distribution per input (drift)
    samples: Any = None  # DataFrame (record_key, sample, label): the rows the fit saw, as what
    segment: str | None = None  # the level a segment fit is for; None: the global fit
    # A linear model's reason codes read the training means of its transformed inputs; they
    # are stored with the fit, which is compiled again later without its training data.
    reason_means: tuple[float, ...] | None = None

    @property
    def estimator_name(self) -> str:
        return estimator_name(self.estimator)


def estimator_name(est: Any) -> str:
    if hasattr(est, "steps"):
        return " > ".join(type(s).__name__ for _, s in est.steps)
    return type(est).__name__


def _hash(df: pd.DataFrame) -> str:
    digest = pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()
    return hashlib.sha256(digest).hexdigest()


def _q(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def read_window(con: Any, model: Model, start: Any, end: Any, inclusive_end: bool) -> pd.DataFrame:
    """Rows with start <= t < end (or <= end), key order; `con` is a DuckDB connection."""
    t = _q(model.split.column)
    cond = exp.true()
    if start is not None:
        cond = exp.and_(cond, t >= exp.Literal.string(start.isoformat()))
    if end is not None:
        upper = exp.Literal.string(end.isoformat())
        cond = exp.and_(cond, t <= upper if inclusive_end else t < upper)
    cols = [model.key, model.target, *model.field_names]
    q = (
        exp.select(*[_q(c) for c in cols])
        .from_(exp.to_table(model.features))
        .where(cond)
        .order_by(_q(model.key))
    )
    df = con.execute(q.sql("duckdb")).df()
    held = quarantined(df, model.fields)  # what the build keeps out of scoring, training skips
    return df[~held].reset_index(drop=True) if held.any() else df


def newest(con: Any, model: Model) -> Any:
    """The newest split-column time of the model's relation (its data's as-of time), after
    checking the relation has the columns the model reads."""
    probe = exp.select(exp.Star()).from_(exp.to_table(model.features)).limit(0)
    cols = {d[0] for d in con.execute(probe.sql("duckdb")).description}
    needed = [model.key, model.split.column, model.target, *model.field_names]
    missing = [c for c in needed if c not in cols]
    if missing:
        raise SpecError(
            f"model {model.name!r}: columns {missing} are not in relation {model.features!r}"
        )
    q = exp.select(exp.Max(this=_q(model.split.column))).from_(exp.to_table(model.features))
    newest = con.execute(q.sql("duckdb")).fetchone()[0]
    if newest is None:
        raise SpecError(f"model {model.name!r}: {model.features!r} is empty: nothing to train on")
    return newest


@dataclass
class Windows:
    """A model's rows as the time split cuts them, checked against the field contracts."""

    bounds: SplitBounds
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    immature: int

    @property
    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return self.train, self.validation, self.holdout


def read_windows(con: Any, model: Model) -> Windows:
    """Read and check the training, validation and holdout windows; `con` is a DuckDB
    connection to the warehouse."""
    b = bounds(newest(con, model), model.split)
    train_df = read_window(con, model, None, b.validation_from or b.train_before, False)
    val_df = (
        read_window(con, model, b.validation_from, b.train_before, inclusive_end=False)
        if b.validation_from is not None
        else train_df.iloc[:0]
    )
    hold_df = read_window(con, model, b.holdout_from, b.matured_until, inclusive_end=True)
    q = (
        exp.select(exp.Count(this=exp.Star()))
        .from_(exp.to_table(model.features))
        .where(_q(model.split.column) > exp.Literal.string(b.matured_until.isoformat()))
    )
    immature = int(con.execute(q.sql("duckdb")).fetchone()[0])
    for df in (train_df, val_df, hold_df):
        check_frame(df, model.fields, model.features)
        unlabeled = df[model.target].isna()
        if unlabeled.any():
            first = df.loc[unlabeled, model.key].iloc[0]
            raise ContractError(
                f"{model.features}.{model.target}: {int(unlabeled.sum())} matured rows have no "
                f"label (first {model.key} {first}); rule: a label is known "
                f"{model.split.label_ready_after_days} days after {model.split.column} "
                "(raise label_ready_after_days if outcomes arrive later)"
            )
    return Windows(b, train_df, val_df, hold_df, immature)


def train(con: Any, model: Model) -> Fit:
    """Fit `model` on matured rows older than its holdout; evaluate on the newest matured rows.

    `con` is a DuckDB connection to the warehouse."""
    return fit_windows(model, read_windows(con, model))


def fit_windows(model: Model, w: Windows, segment: str | None = None) -> Fit:
    """Fit on `w.train` (early stopping on `w.validation`), evaluate on `w.holdout`."""
    b = w.bounds
    train_df, val_df, hold_df = w.frames
    windows = [("training", train_df), ("holdout", hold_df)]
    if b.validation_from is not None:
        windows.append(("validation", val_df))
    where = f" of segment {segment!r}" if segment is not None else ""
    for name, df in windows:
        if len(df) == 0:
            raise SpecError(
                f"model {model.name!r}: the {name} window{where} of the time split is empty "
                f"(holdout_days={model.split.holdout_days}, gap_days={model.split.gap_days}, "
                f"label_ready_after_days={model.split.label_ready_after_days}; "
                f"newest {model.split.column} is {b.as_of:%Y-%m-%d})"
            )
    types = input_types(model.fields)
    X_train = model_frame(train_df, types)
    X_hold = model_frame(hold_df, types)
    y_train = train_df[model.target].to_numpy()
    estimator = fitting.fit(
        model.estimator,
        X_train,
        y_train,
        model_frame(val_df, types),
        val_df[model.target].to_numpy(),
        model.split.early_stopping_rounds,
    )
    task = task_of(estimator)
    if task == "multiclass":
        raise SpecError(
            f"model {model.name!r}: a lead score is one number per record; the fit has "
            f"{len(estimator.classes_)} classes. Use mlsm_py.to_sql for multiclass models."
        )
    y_hold = hold_df[model.target].to_numpy(dtype="float64")
    hold_scores = score_vector(estimator, X_hold)
    metrics = evaluate(y_hold, hold_scores, task)
    # Percentile bands on the holdout's scores: how the fit scores records it has not seen
    # (training scores of trees sit at the extremes of their leaves).
    points = breakpoints(hold_scores)
    return Fit(
        model,
        estimator,
        task,
        metrics,
        Holdout(X_hold, y_hold, b),
        len(train_df),
        w.immature,
        _hash(pd.concat([train_df, val_df])) if len(val_df) else _hash(train_df),
        points,
        bins(y_hold, hold_scores, task) + score_deciles(hold_scores, points),
        [row for f in model.fields for row in reference(train_df[f.name], f).rows()],
        samples(model, train_df, val_df, hold_df),
        segment,
        _reason_means(model, estimator, X_train),
    )


def _reason_means(model: Model, estimator: Any, X_train: pd.DataFrame) -> tuple | None:
    from mlsm_py.compile import reasons

    steps = [st for _, st in getattr(estimator, "steps", [])]
    final = [st for st in steps if st not in (None, "passthrough")][-1] if steps else estimator
    if not model.reasons or not reasons.is_linear(final):
        return None
    return tuple(reasons.linear_means(estimator, X_train))


def samples(model: Model, train_df, val_df, hold_df) -> pd.DataFrame:
    """Which rows the fit saw as what: key (as text), sample and label."""
    parts = [
        pd.DataFrame(
            {
                "record_key": df[model.key].astype(str).to_numpy(),
                "sample": name,
                "label": df[model.target].to_numpy(dtype="float64"),
            }
        )
        for name, df in (("train", train_df), ("validation", val_df), ("test", hold_df))
    ]
    return pd.concat(parts, ignore_index=True)

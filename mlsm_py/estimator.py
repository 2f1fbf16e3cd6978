"""The estimator contract in one place: what a fitted estimator is (its task) and the one
number per record it publishes. Training metrics, the champion re-score and the published score
all call `score_vector`, so a decision-function model is never evaluated on hard labels."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

Task = Literal["classifier", "decision", "regressor", "multiclass"]


def task_of(estimator: Any) -> Task:
    """The same task names as `Assembled.task`, read from the estimator's public API."""
    if not hasattr(estimator, "classes_"):
        return "regressor"
    if not hasattr(estimator, "predict_proba"):
        return "decision"
    return "classifier" if len(estimator.classes_) == 2 else "multiclass"


def score_vector(estimator: Any, X: pd.DataFrame) -> np.ndarray:
    """The published score: positive-class probability, decision function, or prediction."""
    from mlsm_py.pyscore import library_frame

    X = library_frame(estimator, X)
    task = task_of(estimator)
    if task == "classifier":
        return np.asarray(estimator.predict_proba(X), dtype="float64")[:, 1]
    if task == "decision":
        return np.asarray(estimator.decision_function(X), dtype="float64").reshape(-1)
    if task == "regressor":
        return np.asarray(estimator.predict(X), dtype="float64").reshape(len(X), -1)[:, 0]
    raise ValueError("a multiclass model has no single score")


def input_types(fields: Any) -> dict[str, str]:
    """Each declared field with the type the model frame holds it as."""
    return {f.name: ("string" if f.type == "category" else "double") for f in fields}

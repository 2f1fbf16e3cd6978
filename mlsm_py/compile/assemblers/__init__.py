"""Estimator -> AST. An explicit registry: no autodiscovery, and anything not listed is refused
with the list of what is supported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ARDRegression,
    BayesianRidge,
    ElasticNet,
    ElasticNetCV,
    HuberRegressor,
    Lars,
    Lasso,
    LassoCV,
    LassoLars,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    Perceptron,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    RidgeCV,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import LinearSVC, LinearSVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import (
    calibration,
    linear,
    preprocessing,
    sklearn_boosting,
    sklearn_trees,
)
from mlsm_py.compile.assemblers import lightgbm as lgbm
from mlsm_py.compile.assemblers import xgboost as xgb
from mlsm_py.errors import UnsupportedError

Columns = list[tuple[str, ast.Expr]]

# Transformers map the columns they receive to the columns they produce.
TRANSFORMERS: dict[type, Callable[[Any, Columns], Columns]] = {
    FunctionTransformer: preprocessing.function_transformer,
    SimpleImputer: preprocessing.simple_imputer,
    StandardScaler: preprocessing.standard_scaler,
    MinMaxScaler: preprocessing.min_max_scaler,
    RobustScaler: preprocessing.robust_scaler,
    MaxAbsScaler: preprocessing.max_abs_scaler,
    OneHotEncoder: preprocessing.one_hot_encoder,
    OrdinalEncoder: preprocessing.ordinal_encoder,
}

# Final estimators map their input columns to one score expression, or to a list of one
# probability expression per class for a multiclass classifier.
ESTIMATORS: dict[type, Callable[[Any, list[ast.Expr]], ast.Expr | list[ast.Expr]]] = {
    LogisticRegression: linear.logistic_regression,
    LogisticRegressionCV: linear.logistic_regression,
    SGDClassifier: linear.sgd_classifier,
    LinearSVC: linear.decision_only,
    RidgeClassifier: linear.decision_only,
    RidgeClassifierCV: linear.decision_only,
    Perceptron: linear.decision_only,
    LinearRegression: linear.linear_regressor,
    Ridge: linear.linear_regressor,
    RidgeCV: linear.linear_regressor,
    Lasso: linear.linear_regressor,
    LassoCV: linear.linear_regressor,
    ElasticNet: linear.linear_regressor,
    ElasticNetCV: linear.linear_regressor,
    Lars: linear.linear_regressor,
    LassoLars: linear.linear_regressor,
    BayesianRidge: linear.linear_regressor,
    ARDRegression: linear.linear_regressor,
    HuberRegressor: linear.linear_regressor,
    SGDRegressor: linear.linear_regressor,
    LinearSVR: linear.linear_regressor,
    CalibratedClassifierCV: calibration.calibrated_classifier,
    DecisionTreeClassifier: sklearn_trees.tree_classifier,
    DecisionTreeRegressor: sklearn_trees.tree_regressor,
    RandomForestClassifier: sklearn_trees.forest_classifier,
    RandomForestRegressor: sklearn_trees.forest_regressor,
    ExtraTreesClassifier: sklearn_trees.forest_classifier,
    ExtraTreesRegressor: sklearn_trees.forest_regressor,
    LGBMClassifier: lgbm.classifier,
    LGBMRegressor: lgbm.regressor,
}


# Families in modules of their own register there.
ESTIMATORS.update(sklearn_boosting.ESTIMATORS)
ESTIMATORS.update(xgb.ESTIMATORS)


def supported() -> list[str]:
    names = {t.__name__ for t in (*TRANSFORMERS, *ESTIMATORS)}
    return sorted(names | {"Pipeline", "ColumnTransformer"})


def _unsupported(step: object, where: str) -> UnsupportedError:
    return UnsupportedError(
        f"not supported: {type(step).__name__} ({where}); supported: {', '.join(supported())}"
    )


@dataclass(frozen=True)
class Assembled:
    """A fitted estimator as an AST over named input columns.

    task "classifier": `score` is the positive-class probability; "regressor": the prediction;
    "decision": a binary classifier without probabilities (LinearSVC), `score` is its
    `decision_function`;
    "multiclass": `score` is None and `probas` holds one probability per class of `classes`, in
    the library's order (the order of `predict_proba`'s columns).
    `tolerance`: the parity tolerance the model's own arithmetic needs when it is coarser than
    the gate's float64 default (XGBoost's float32 expf); an estimator function declares it as a
    `tolerance` attribute on the expressions it returns. None: the default.
    """

    inputs: tuple[str, ...]
    score: ast.Expr | None
    task: str
    classes: tuple = ()
    probas: tuple[ast.Expr, ...] = ()
    tolerance: float | None = None
    # Inputs a data contract guarantees hold a finite number or NULL (never NaN or +-inf): the
    # SQL reads them as they are, without the per-row NaN -> NULL step. Empty for a bare
    # estimator; `flow.compiled` fills it from the model's `fields` (the `finite` checks).
    finite: frozenset[str] = frozenset()

    def outputs(self) -> list[tuple[str, ast.Expr]]:
        """The output columns in order: `score`, or `score_<class>`... and `predicted_class`."""
        if self.task != "multiclass":
            assert self.score is not None
            return [("score", self.score)]
        cols = [(output_name(c), p) for c, p in zip(self.classes, self.probas, strict=True)]
        cols.append(("predicted_class", ast.ArgMaxExpr(list(self.probas), list(self.classes))))
        return cols


def output_name(label: object) -> str:
    """`score_<class>`; the label is written as str() writes it (quoted as an identifier)."""
    return f"score_{label}"


def class_label(label: object) -> str | int | float:
    """A class label as a plain Python value a SQL literal can be made of."""
    if isinstance(label, bool | np.bool_):
        return int(label)
    if isinstance(label, np.integer | int):
        return int(label)
    if isinstance(label, np.floating | float):
        return float(label)
    if isinstance(label, str | np.str_):
        return str(label)
    raise UnsupportedError(
        f"class label {label!r} has type {type(label).__name__}; labels must be strings or numbers"
    )


def assemble(estimator: Any) -> Assembled:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        raise UnsupportedError(
            f"{type(estimator).__name__} was fitted without column names; fit it on a pandas "
            "DataFrame so the compiled SQL can read input columns by name (feature_names_in_)"
        )
    cols: Columns = [(str(n), ast.ColumnRef(str(n))) for n in names]
    if isinstance(estimator, Pipeline):
        steps = [s for _, s in estimator.steps if s not in (None, "passthrough")]
        for step in steps[:-1]:
            cols = transform(step, cols, "pipeline step")
        final = steps[-1]
        # A derived input (scaled, imputed, one-hot) is computed once as a column and then read
        # by every tree or term that needs it.
        cols = [(n, e if isinstance(e, ast.ColumnRef) else ast.IdExpr(e, True)) for n, e in cols]
    else:
        final = estimator
    fn = ESTIMATORS.get(type(final))
    if fn is None:
        raise _unsupported(final, "final estimator")
    score = fn(final, [e for _, e in cols])
    inputs = tuple(str(n) for n in names)
    declared = [
        getattr(s, "tolerance", None)
        for s in (score if isinstance(score, list | tuple) else [score])
    ]
    tolerance = max((t for t in declared if t is not None), default=None)
    if isinstance(score, list | tuple):
        # One probability per class: a multiclass classifier.
        classes = tuple(class_label(c) for c in final.classes_)
        if len(score) != len(classes):
            raise UnsupportedError(
                f"{type(final).__name__}: {len(score)} class scores for {len(classes)} classes"
            )
        names_out = [output_name(c) for c in classes]
        if len(set(n.lower() for n in names_out)) != len(names_out):
            raise UnsupportedError(
                f"{type(final).__name__}: class labels {list(classes)} give output columns that "
                "differ only in case"
            )
        return Assembled(inputs, None, "multiclass", classes, tuple(score), tolerance)
    if not hasattr(final, "classes_"):
        task = "regressor"
    else:
        # SGDClassifier(loss="hinge") and LinearSVC have no predict_proba: their score is the
        # decision function.
        task = "classifier" if hasattr(final, "predict_proba") else "decision"
    return Assembled(inputs, score, task, tolerance=tolerance)


def transform(step: Any, cols: Columns, where: str) -> Columns:
    if isinstance(step, Pipeline):
        for _, sub in step.steps:
            if sub not in (None, "passthrough"):
                cols = transform(sub, cols, "pipeline step")
        return cols
    if isinstance(step, ColumnTransformer):
        return _column_transformer(step, cols)
    fn = TRANSFORMERS.get(type(step))
    if fn is None:
        raise _unsupported(step, where)
    return fn(step, cols)


def _column_transformer(ct: ColumnTransformer, cols: Columns) -> Columns:
    """The transformers' outputs side by side, in `transformers_` order (the remainder last).
    A fitted "passthrough" is an identity FunctionTransformer; a transformer weight multiplies
    that transformer's outputs, as scikit-learn's `_transform_one` does."""
    by_name = {n: i for i, (n, _) in enumerate(cols)}
    weights = ct.transformer_weights or {}
    out: Columns = []
    for name, trans, selection in ct.transformers_:
        picked = [cols[i] for i in _select(selection, by_name, len(cols), name)]
        if (isinstance(trans, str) and trans == "drop") or not picked:
            continue
        if isinstance(trans, str) and trans == "passthrough":
            produced = picked
        else:
            produced = transform(trans, picked, f"ColumnTransformer step {name!r}")
        weight = weights.get(name)
        if weight is not None:
            w = ast.num(float(weight))
            produced = [
                (n, ast.BinNumExpr(ast.as_double(e), w, ast.BinNumOpType.MUL)) for n, e in produced
            ]
        out.extend(produced)
    return out


def _select(selection: Any, by_name: dict[str, int], n: int, step: str) -> list[int]:
    if isinstance(selection, str):
        selection = [selection]
    if isinstance(selection, slice):
        if isinstance(selection.start, str) or isinstance(selection.stop, str):
            # A slice of column names is label-based and includes its end, as in pandas .loc.
            start = by_name[selection.start] if selection.start is not None else 0
            stop = by_name[selection.stop] + 1 if selection.stop is not None else n
            return list(range(n))[start : stop : selection.step]
        return list(range(n))[selection]
    items = list(selection)
    if all(isinstance(s, str) for s in items):
        missing = [s for s in items if s not in by_name]
        if missing:
            raise UnsupportedError(
                f"ColumnTransformer step {step!r} selects columns {missing} that the input lacks"
            )
        return [by_name[s] for s in items]
    if all(isinstance(s, bool) or type(s).__name__ == "bool_" for s in items):
        return [i for i, keep in enumerate(items) if keep]
    if all(hasattr(s, "__index__") for s in items):
        return [int(s) for s in items]
    raise UnsupportedError(
        f"ColumnTransformer step {step!r}: column selection {selection!r} is not supported; "
        "select columns by name, position or boolean mask"
    )

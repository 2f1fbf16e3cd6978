"""CalibratedClassifierCV (scikit-learn 1.7): each fold's base classifier, its calibrators, and
the average over folds, as `CalibratedClassifierCV.predict_proba` computes them.

Per fold (`_CalibratedClassifier.predict_proba`):
- the base's response: `decision_function` if the base has one, else `predict_proba` (binary:
  the positive-class column);
- sigmoid: `expit(-(a_ * f + b_))`; isotonic: `np.interp` over (X_thresholds_, y_thresholds_)
  after clipping f to [X_min_, X_max_];
- binary: that is the positive-class probability; 3+ classes: one calibrator per class, divided
  by their sum (uniform 1/n where the sum is 0);
- values in (1, 1 + 1e-5] are set to 1.
Then the mean over `calibrated_classifiers_` (one with ensemble=False, one per fold otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import (
    LogisticRegression,
    LogisticRegressionCV,
    Perceptron,
    RidgeClassifier,
    RidgeClassifierCV,
    SGDClassifier,
)
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import linear, sklearn_boosting
from mlsm_py.errors import UnsupportedError

# Bases whose decision_function can be compiled: the margin, not a probability, is what the
# calibrators were fitted on.
MARGINS: dict[type, Callable[[Any, list[ast.Expr]], ast.Expr | list[ast.Expr]]] = {
    LogisticRegression: linear.decision_function,
    LogisticRegressionCV: linear.decision_function,
    SGDClassifier: linear.decision_function,
    LinearSVC: linear.decision_function,
    RidgeClassifier: linear.decision_function,
    RidgeClassifierCV: linear.decision_function,
    Perceptron: linear.decision_function,
    GradientBoostingClassifier: sklearn_boosting.decision_function,
    HistGradientBoostingClassifier: sklearn_boosting.decision_function,
}

# predict_proba's "minimally exceeds 1.0" fix-up.
CLIP_ABOVE_ONE = 1.0 + 1e-5


def calibrated_classifier(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    if model.method not in ("sigmoid", "isotonic"):
        raise UnsupportedError(
            f"not supported: CalibratedClassifierCV(method={model.method!r}); "
            "supported: 'sigmoid', 'isotonic'"
        )
    n_classes = len(model.classes_)
    folds = [_fold(cc, model, inputs) for cc in model.calibrated_classifiers_]
    if n_classes == 2:
        return _mean([f for f in folds if not isinstance(f, list)])
    return [_mean([f[k] for f in folds if isinstance(f, list)]) for k in range(n_classes)]


def _mean(probas: list[ast.Expr]) -> ast.Expr:
    # (0 + p1 + ... + pn) / n; with one calibrated classifier that is p1 exactly.
    if len(probas) == 1:
        return probas[0]
    shared = [ast.IdExpr(p, to_reuse=True) for p in probas]
    return ast.BinNumExpr(ast.add_all(shared), ast.num(len(probas)), ast.BinNumOpType.DIV)


def _fold(cc: Any, model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    base = cc.estimator
    if isinstance(base, FrozenEstimator):
        base = base.estimator
    classes = np.asarray(model.classes_)
    if not np.array_equal(np.asarray(base.classes_), classes):
        raise UnsupportedError(
            "CalibratedClassifierCV: a fold's base classifier saw classes "
            f"{list(base.classes_)} of {list(classes)}; refit with folds that hold every class"
        )
    response = _response(base, inputs)
    if len(classes) == 2:
        if isinstance(response, list):
            raise UnsupportedError("CalibratedClassifierCV: binary base gave several responses")
        (calibrator,) = cc.calibrators
        return _clip_one(_calibrate(calibrator, response))
    if not isinstance(response, list) or len(response) != len(classes):
        raise UnsupportedError(
            f"CalibratedClassifierCV: the base gave no per-class response for {len(classes)} "
            "classes"
        )
    probas = [_calibrate(c, r) for c, r in zip(cc.calibrators, response, strict=True)]
    return [_clip_one(p) for p in linear.normalise(probas, 1.0 / len(classes))]


def _response(base: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    """The base's decision_function if it has one, else its predict_proba, as the
    calibrators saw it (scikit-learn's `_get_response_values`)."""
    # Imported here: the registry imports this module.
    from mlsm_py.compile.assemblers import ESTIMATORS, transform

    final = base
    if isinstance(base, Pipeline):
        names = _input_names(base, inputs)
        cols = list(zip(names, inputs, strict=True))
        steps = [s for _, s in base.steps if s not in (None, "passthrough")]
        for step in steps[:-1]:
            cols = transform(step, cols, "CalibratedClassifierCV base pipeline step")
        cols = [(n, e if isinstance(e, ast.ColumnRef) else ast.IdExpr(e, True)) for n, e in cols]
        inputs, final = [e for _, e in cols], steps[-1]
    if hasattr(base, "decision_function"):
        fn = MARGINS.get(type(final))
        if fn is None:
            raise UnsupportedError(
                f"not supported: CalibratedClassifierCV over {type(final).__name__}: it "
                "calibrates that model's decision_function, which is compiled only for "
                f"{', '.join(sorted(t.__name__ for t in MARGINS))}"
            )
        return fn(final, inputs)
    fn = ESTIMATORS.get(type(final))
    if fn is None:
        raise UnsupportedError(
            f"not supported: CalibratedClassifierCV over {type(final).__name__} (base estimator)"
        )
    return fn(final, inputs)


def _input_names(base: Any, inputs: list[ast.Expr]) -> list[str]:
    names = getattr(base, "feature_names_in_", None)
    if names is not None and len(names) == len(inputs):
        return [str(n) for n in names]
    return [e.name if isinstance(e, ast.ColumnRef) else f"x{i}" for i, e in enumerate(inputs)]


def _calibrate(calibrator: Any, f: ast.Expr) -> ast.Expr:
    f = f if isinstance(f, ast.IdExpr) and f.to_reuse else ast.IdExpr(f, to_reuse=True)
    if isinstance(calibrator, IsotonicRegression):
        return _isotonic(calibrator, f)
    if type(calibrator).__name__ == "_SigmoidCalibration":
        # expit(-(a * f + b)) computed as expit((-a) * f + (-b)): negating both factors and
        # both terms is exact in IEEE arithmetic, so this is the same double.
        a, b = float(calibrator.a_), float(calibrator.b_)
        linear.numeric_or_raise(np.array([a, b]), "sigmoid calibrator")
        z = ast.BinNumExpr(
            ast.BinNumExpr(ast.num(-a), f, ast.BinNumOpType.MUL),
            ast.num(-b),
            ast.BinNumOpType.ADD,
        )
        return linear.expit(z)
    raise UnsupportedError(f"not supported: calibrator {type(calibrator).__name__}")


def _isotonic(iso: IsotonicRegression, f: ast.Expr) -> ast.Expr:
    """np.interp(clip(f, X_min_, X_max_), X_thresholds_, y_thresholds_), interval by interval:
    at a threshold it returns that threshold's y, inside [x_j, x_j+1) it computes
    slope_j * (f - x_j) + y_j with slope_j = (y_j+1 - y_j) / (x_j+1 - x_j)."""
    xs = np.asarray(iso.X_thresholds_)
    ys = np.asarray(iso.y_thresholds_)
    if xs.dtype != np.float64 or ys.dtype != np.float64:
        # IsotonicRegression casts its input to the thresholds' dtype and its output back.
        raise UnsupportedError(
            f"not supported: isotonic calibration fitted on {xs.dtype} responses (float64 only)"
        )
    if iso.out_of_bounds != "clip":
        raise UnsupportedError(
            f"not supported: IsotonicRegression(out_of_bounds={iso.out_of_bounds!r})"
        )
    linear.numeric_or_raise(np.concatenate([xs, ys]), "isotonic calibrator")
    if len(ys) == 1:
        return ast.num(float(ys[0]))
    if xs[0] != iso.X_min_ or xs[-1] != iso.X_max_ or np.any(np.diff(xs) <= 0):
        raise UnsupportedError("isotonic calibrator thresholds are not sorted and clipped")
    with np.errstate(over="ignore"):
        slopes = (ys[1:] - ys[:-1]) / (xs[1:] - xs[:-1])
    linear.numeric_or_raise(slopes, "isotonic calibrator (a slope overflows)")

    def segment(j: int) -> ast.Expr:
        dx = ast.BinNumExpr(f, ast.num(float(xs[j])), ast.BinNumOpType.SUB)
        return ast.BinNumExpr(
            ast.BinNumExpr(ast.num(float(slopes[j])), dx, ast.BinNumOpType.MUL),
            ast.num(float(ys[j])),
            ast.BinNumOpType.ADD,
        )

    # The last segment is the ELSE, so a NULL response gives NULL (numpy: NaN in, NaN out).
    expr = segment(len(xs) - 2)
    for j in range(len(xs) - 3, -1, -1):
        expr = ast.IfExpr(
            ast.CompExpr(f, ast.num(float(xs[j + 1])), ast.CompOpType.LT), segment(j), expr
        )
    expr = ast.IfExpr(
        ast.CompExpr(f, ast.num(float(xs[-1])), ast.CompOpType.GTE), ast.num(float(ys[-1])), expr
    )
    return ast.IfExpr(
        ast.CompExpr(f, ast.num(float(xs[0])), ast.CompOpType.LTE), ast.num(float(ys[0])), expr
    )


def _clip_one(p: ast.Expr) -> ast.Expr:
    p = ast.IdExpr(p, to_reuse=True)
    above = ast.AndExpr(
        ast.CompExpr(p, ast.num(1.0), ast.CompOpType.GT),
        ast.CompExpr(p, ast.num(CLIP_ABOVE_ONE), ast.CompOpType.LTE),
    )
    return ast.IfExpr(above, ast.num(1.0), p)

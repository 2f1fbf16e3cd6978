"""Linear models: an intercept plus a weighted sum per output, then the estimator's own link.

scikit-learn computes every linear score as `X @ coef_.T + intercept_` in float64; the SQL adds
the same products (intercept first, then left to right), which differs from BLAS only in the
order of the additions (a few ulps).

Probabilities, as scikit-learn 1.7 computes them:
- LogisticRegression multinomial (the default for 3+ classes): softmax of the class margins;
  binary with multi_class="multinomial": softmax of (-margin, margin).
- LogisticRegression one-vs-rest (binary, multi_class="ovr", solver="liblinear") and
  SGDClassifier(loss="log_loss"): expit of each margin; with 3+ classes each is divided by
  their sum.
- SGDClassifier(loss="modified_huber"): (clip(margin, -1, 1) + 1) / 2, normalised over 3+
  classes (uniform where every class is 0).
Classifiers without predict_proba (LinearSVC, RidgeClassifier, Perceptron, SGD with any other
loss) score their decision function; with 3+ classes they are refused (see `decision_only`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers.preprocessing import numeric_or_raise
from mlsm_py.errors import UnsupportedError

# scipy's expit is 1 / (1 + exp(-z)). Above EXPIT_HIGH the result is exactly 1.0 in float64
# (exp(-40) < 2**-53); below EXPIT_LOW exp(-z) overflows to inf in numpy and expit is exactly
# 0.0, so saturating there is exact and keeps exp() in range on every engine.
EXPIT_HIGH = 40.0
EXPIT_LOW = -float(np.log(np.finfo(np.float64).max))  # -709.78...


def affine(expr: ast.Expr) -> tuple[ast.Expr, float, float]:
    """`expr` as (base, a, c) with expr = a * base + c, peeling the constant steps a scaler
    adds ((x - mean) / scale, x * scale + min, x / max_abs) off whatever they read."""
    a, c = 1.0, 0.0
    steps = []
    node = expr
    while True:
        inner = node.expr if isinstance(node, ast.IdExpr) else node
        if not (isinstance(inner, ast.BinNumExpr) and isinstance(inner.right, ast.NumVal)):
            break  # what the steps read stays as it was (a shared imputed column stays shared)
        steps.append((inner.op, float(inner.right.value)))
        node = inner.left
    for op, v in reversed(steps):  # innermost first
        if op == ast.BinNumOpType.ADD:
            c += v
        elif op == ast.BinNumOpType.SUB:
            c -= v
        elif op == ast.BinNumOpType.MUL:
            a, c = a * v, c * v
        else:
            a, c = a / v, c / v
    return node, a, c


def _weighted_sum(coef: np.ndarray, intercept: float, inputs: list[ast.Expr]) -> ast.Expr:
    """intercept + sum of w * x. A scaler's constants are folded into the weights and the
    intercept, so each input costs one multiply-add on what the imputer yields (the scaling
    steps are not computed per row). This moves scores by a few ulps, not more: the products
    and sums are the same float64 values up to rounding, and the gate's 1e-9 holds them."""
    if len(coef) != len(inputs):
        raise UnsupportedError(f"linear model has {len(coef)} weights for {len(inputs)} inputs")
    numeric_or_raise(np.append(coef, intercept), "linear model")
    folded = [affine(x) for x in inputs]
    weights = [float(w) * a for w, (_, a, _) in zip(coef, folded, strict=True)]
    offset = float(intercept) + sum(
        float(w) * c for w, (_, _, c) in zip(coef, folded, strict=True) if c != 0.0
    )
    if not np.isfinite(np.array([*weights, offset])).all():
        # A scale near the float64 limits: folding would overflow, so compute it as written.
        folded = [(x, 1.0, 0.0) for x in inputs]
        weights, offset = [float(w) for w in coef], float(intercept)
    terms: list[ast.Expr] = [ast.num(offset)]
    for w, (x, _, _) in zip(weights, folded, strict=True):
        terms.append(ast.BinNumExpr(ast.as_double(x), ast.num(w), ast.BinNumOpType.MUL))
    return ast.add_all(terms)


def margins(model: Any, inputs: list[ast.Expr]) -> list[ast.Expr]:
    """One margin per row of `coef_` (`decision_function`'s columns), each a shared column."""
    coef = np.atleast_2d(np.asarray(model.coef_, dtype="float64"))
    intercept = np.ravel(np.asarray(model.intercept_, dtype="float64"))
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    if intercept.size != coef.shape[0]:
        raise UnsupportedError(
            f"{type(model).__name__}: {coef.shape[0]} weight rows for {intercept.size} intercepts"
        )
    return [
        ast.IdExpr(_weighted_sum(row, float(b), inputs), to_reuse=True)
        for row, b in zip(coef, intercept, strict=True)
    ]


def decision_function(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    """The classifier's `decision_function`: one margin (binary) or one per class."""
    ms = margins(model, inputs)
    n_classes = len(model.classes_)
    if n_classes == 2 and len(ms) == 1:
        return ms[0]
    if n_classes > 2 and len(ms) == n_classes:
        return ms
    raise UnsupportedError(
        f"{type(model).__name__}: {len(ms)} decision functions for {n_classes} classes "
        "(binary models with one weight row and one-vs-rest multiclass models are supported)"
    )


def expit(z: ast.Expr) -> ast.Expr:
    """scipy.special.expit written as scipy computes it, 1 / (1 + exp(-z)), saturated where
    that is exactly 0 or 1. The emitter's SigmoidExpr uses another form for z < 0 (a few ulps
    apart); one-vs-rest normalisation divides by a sum of these, so the form matters there."""
    z = z if isinstance(z, ast.IdExpr) and z.to_reuse else ast.IdExpr(z, to_reuse=True)
    neg = ast.BinNumExpr(z, ast.num(-1.0), ast.BinNumOpType.MUL)
    core = ast.BinNumExpr(
        ast.num(1.0),
        ast.BinNumExpr(ast.num(1.0), ast.ExpExpr(neg), ast.BinNumOpType.ADD),
        ast.BinNumOpType.DIV,
    )
    return ast.IfExpr(
        ast.CompExpr(z, ast.num(EXPIT_HIGH), ast.CompOpType.GT),
        ast.num(1.0),
        ast.IfExpr(ast.CompExpr(z, ast.num(EXPIT_LOW), ast.CompOpType.LT), ast.num(0.0), core),
    )


def normalise(probas: list[ast.Expr], when_zero: float) -> list[ast.Expr]:
    """Each value divided by their sum (left to right, as numpy sums a short row); `when_zero`
    is what every class gets when the sum is 0 (NaN where the library divides 0 by 0)."""
    shared = [ast.IdExpr(p, to_reuse=True) for p in probas]
    total = ast.IdExpr(ast.add_all(shared), to_reuse=True)
    is_zero = ast.CompExpr(total, ast.num(0.0), ast.CompOpType.EQ)
    # The guard also keeps PostgreSQL from raising on a division by zero.
    return [
        ast.IfExpr(is_zero, ast.num(when_zero), ast.BinNumExpr(p, total, ast.BinNumOpType.DIV))
        for p in shared
    ]


def _ovr_logistic(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    ms = decision_function(model, inputs)
    if not isinstance(ms, list):
        return ast.SigmoidExpr(ms)
    # numpy divides 0 by 0 when every class's expit is 0: NaN, which the SQL repeats.
    return normalise([expit(m) for m in ms], float("nan"))


def _uses_softmax(model: Any) -> bool:
    """LogisticRegression.predict_proba's own test (scikit-learn 1.7)."""
    multi_class = getattr(model, "multi_class", "deprecated")
    ovr = multi_class in ("ovr", "warn") or (
        multi_class in ("auto", "deprecated")
        and (len(model.classes_) <= 2 or model.solver == "liblinear")
    )
    return not ovr


def logistic_regression(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    if not _uses_softmax(model):
        return _ovr_logistic(model, inputs)
    ms = decision_function(model, inputs)
    if isinstance(ms, list):
        return ast.softmax(ms)
    # Binary multinomial: softmax over (-margin, margin), as predict_proba builds it.
    neg = ast.IdExpr(ast.BinNumExpr(ms, ast.num(-1.0), ast.BinNumOpType.MUL), to_reuse=True)
    return ast.softmax([neg, ms])[1]


def sgd_classifier(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    if model.loss == "log_loss":
        return _ovr_logistic(model, inputs)
    if model.loss == "modified_huber":
        return _modified_huber(model, inputs)
    return decision_only(model, inputs)


def _modified_huber(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    ms = decision_function(model, inputs)

    def proba(m: ast.Expr) -> ast.Expr:
        clipped = ast.IfExpr(
            ast.CompExpr(m, ast.num(-1.0), ast.CompOpType.LT),
            ast.num(-1.0),
            ast.IfExpr(ast.CompExpr(m, ast.num(1.0), ast.CompOpType.GT), ast.num(1.0), m),
        )
        shifted = ast.BinNumExpr(clipped, ast.num(1.0), ast.BinNumOpType.ADD)
        return ast.BinNumExpr(shifted, ast.num(2.0), ast.BinNumOpType.DIV)

    if not isinstance(ms, list):
        return proba(ms)
    # All classes at 0: scikit-learn sets each to 1 and divides by the class count.
    return normalise([proba(m) for m in ms], 1.0 / len(ms))


def decision_only(model: Any, inputs: list[ast.Expr]) -> ast.Expr:
    """A classifier without predict_proba: the binary decision function.

    With 3+ classes there is one decision function per class and no probability; the output
    contract (`score_<class>` are probabilities, checked against predict_proba) has no place
    for them, so they are refused rather than passed off as probabilities."""
    if len(model.classes_) != 2:
        raise UnsupportedError(
            f"not supported: {type(model).__name__} with {len(model.classes_)} classes and no "
            "predict_proba (one-vs-rest decision functions are not probabilities); supported: "
            "binary, or a multiclass model with predict_proba (LogisticRegression, "
            "SGDClassifier(loss='log_loss' or 'modified_huber'), or CalibratedClassifierCV)"
        )
    ms = decision_function(model, inputs)
    assert not isinstance(ms, list)
    return ms


def linear_regressor(model: Any, inputs: list[ast.Expr]) -> ast.Expr:
    coef = np.asarray(model.coef_, dtype="float64")
    intercept = np.ravel(np.asarray(model.intercept_, dtype="float64"))
    if coef.ndim != 1 or intercept.size != 1:
        raise UnsupportedError(
            f"not supported: multi-output {type(model).__name__} (coef_ of shape {coef.shape}); "
            "fit one model per target"
        )
    return _weighted_sum(coef, float(intercept[0]), inputs)

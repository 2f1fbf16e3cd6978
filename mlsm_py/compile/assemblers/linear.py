"""Linear models: an intercept plus a weighted sum; classifiers apply the logistic link."""

from __future__ import annotations

import numpy as np

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers.preprocessing import numeric_or_raise
from mlsm_py.errors import UnsupportedError


def _weighted_sum(coef: np.ndarray, intercept: float, inputs: list[ast.Expr]) -> ast.Expr:
    if len(coef) != len(inputs):
        raise UnsupportedError(f"linear model has {len(coef)} weights for {len(inputs)} inputs")
    numeric_or_raise(coef, "linear model")
    terms: list[ast.Expr] = [ast.num(intercept)]
    for w, x in zip(coef, inputs, strict=True):
        terms.append(ast.BinNumExpr(ast.as_double(x), ast.num(w), ast.BinNumOpType.MUL))
    return ast.add_all(terms)


def logistic_regression(model, inputs: list[ast.Expr]) -> ast.Expr:
    if len(model.classes_) != 2:
        raise UnsupportedError(
            f"not supported: LogisticRegression with {len(model.classes_)} classes "
            "(binary only in this release)"
        )
    margin = _weighted_sum(model.coef_[0], float(model.intercept_[0]), inputs)
    # The margin is computed once, as a column, and the sigmoid reads it.
    return ast.SigmoidExpr(ast.IdExpr(margin, to_reuse=True))


def linear_regressor(model, inputs: list[ast.Expr]) -> ast.Expr:
    coef = np.asarray(model.coef_)
    if coef.ndim != 1:
        raise UnsupportedError(f"not supported: multi-output {type(model).__name__}")
    return _weighted_sum(coef, float(np.ravel(model.intercept_)[0]) if np.ndim(model.intercept_)
                         else float(model.intercept_), inputs)

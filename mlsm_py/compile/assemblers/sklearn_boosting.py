"""scikit-learn GradientBoosting and HistGradientBoosting (classifier and regressor).

Both sum a constant start (GradientBoosting's init estimator, HistGradientBoosting's
`baseline_prediction`) and one tree per stage and output, left to right, then apply the loss's
inverse link. The two differ where it matters for exactness:

- GradientBoosting trees are ordinary scikit-learn trees: float32(x) <= threshold, each leaf
  scaled as `learning_rate * value` (`predict_stages` in `_gradient_boosting.pyx`). The library
  refuses NaN, so a row with a missing input scores NULL (docs/decisions/0010).
- HistGradientBoosting compares float64 x <= threshold (X_DTYPE in `_predictor.pyx`), routes NaN
  by each node's `missing_go_to_left`, and splits categorical features on a set of categories
  after its internal OrdinalEncoder; unknown categories take the missing route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn._loss.link import HalfLogitLink, IdentityLink, LogitLink, LogLink, MultinomialLogit
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers.sklearn_trees import tree_expr
from mlsm_py.errors import UnsupportedError


def _check_inputs(model, inputs: list[ast.Expr]) -> None:
    if model.n_features_in_ != len(inputs):
        raise UnsupportedError(
            f"{type(model).__name__} expects {model.n_features_in_} inputs, got {len(inputs)}"
        )


def _margins(starts: np.ndarray, stages: list[list[ast.Expr]]) -> list[ast.Expr]:
    """Per output k: start_k + tree_1k + tree_2k + ..., summed left to right as both libraries
    accumulate; each tree is a column of its own."""
    out = []
    for k, start in enumerate(starts):
        trees = [ast.IdExpr(stage[k], to_reuse=True) for stage in stages]
        out.append(ast.add_all([ast.num(start), *trees]))
    return out


# -- GradientBoosting --------------------------------------------------------------------------

_GB_CLASSIFIER_LOSSES = ("log_loss", "exponential")
_GB_REGRESSOR_LOSSES = ("squared_error", "absolute_error", "huber", "quantile")
# DummyClassifier strategies whose predict_proba ignores X and draws no random numbers.
_CONSTANT_DUMMY = ("prior", "most_frequent", "constant", "uniform")


def _gb_start(model) -> np.ndarray:
    """The init estimator's raw prediction, one value per output.

    init="zero" starts at 0. A Dummy estimator predicts the same for every row, so scikit-learn's
    own `_raw_predict_init` on one row gives the constant bit for bit (predict_proba, clip to
    [eps, 1 - eps], the loss's link). Any other init estimator depends on X: refused."""
    name = type(model).__name__
    init = model.init_
    if isinstance(init, str):
        if init != "zero":
            raise UnsupportedError(f"{name}: init={init!r} is not supported")
        return np.zeros(model.n_trees_per_iteration_)
    constant = (type(init) is DummyRegressor) or (
        type(init) is DummyClassifier and init.strategy in _CONSTANT_DUMMY
    )
    if not constant:
        what = type(init).__name__
        if type(init) is DummyClassifier:
            what += f"(strategy={init.strategy!r})"
        raise UnsupportedError(
            f"{name}: init={what} is not supported; supported: the default init (None), "
            f"init='zero', DummyRegressor, DummyClassifier with strategy in {_CONSTANT_DUMMY}"
        )
    row = np.zeros((1, model.n_features_in_), dtype=np.float32)
    start = np.asarray(model._raw_predict_init(row), dtype="float64")
    return start[0]


def _gb_stages(model, inputs: list[ast.Expr]) -> list[list[ast.Expr]]:
    lr = float(model.learning_rate)
    stages = []
    for stage in model.estimators_:
        # predict_stages adds `scale * value[leaf]`: the product is one float64 multiply, done
        # here once per leaf.
        stages.append(
            [
                tree_expr(est.tree_, inputs, lr * est.tree_.value[:, 0, 0], route_missing=False)
                for est in stage
            ]
        )
    return stages


def _may_be_null(expr: ast.Expr) -> bool:
    """False only where the expression provably has a value (an imputed or one-hot column)."""
    if isinstance(expr, ast.IdExpr):
        return _may_be_null(expr.expr)
    if isinstance(expr, ast.NumVal):
        return False
    if isinstance(expr, ast.CoalesceExpr):
        return _may_be_null(expr.default)
    if isinstance(expr, ast.IfExpr):
        return _may_be_null(expr.body) or _may_be_null(expr.orelse)
    if isinstance(expr, ast.BinNumExpr):
        return _may_be_null(expr.left) or _may_be_null(expr.right)
    return True


def _null_if_missing(inputs: list[ast.Expr], value: ast.Expr) -> ast.Expr:
    """NULL when any input is missing (GradientBoosting raises on NaN), else `value`.

    `CASE WHEN x IS NULL THEN x ...` yields the NULL of the input's own (double) type."""
    out = value
    for x in reversed([ast.as_double(x) for x in inputs if _may_be_null(x)]):
        out = ast.IfExpr(ast.IsNullExpr(x), x, out)
    return out


def gb_classifier(model, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    _check_inputs(model, inputs)
    name = type(model).__name__
    if model.loss not in _GB_CLASSIFIER_LOSSES:
        raise UnsupportedError(
            f"{name}: loss={model.loss!r} is not supported; supported: {_GB_CLASSIFIER_LOSSES}"
        )
    margins = _margins(_gb_start(model), _gb_stages(model, inputs))
    # Shared columns: the sigmoid and softmax read each margin more than once.
    margins = [ast.IdExpr(_null_if_missing(inputs, m), to_reuse=True) for m in margins]
    link = model._loss.link
    if len(model.classes_) == 2:
        if isinstance(link, HalfLogitLink):
            # loss="exponential": predict_proba is expit(2 * raw).
            return ast.SigmoidExpr(ast.BinNumExpr(ast.num(2.0), margins[0], ast.BinNumOpType.MUL))
        if isinstance(link, LogitLink):
            return ast.SigmoidExpr(margins[0])
    elif isinstance(link, MultinomialLogit):
        return ast.softmax(margins)
    raise UnsupportedError(f"{name}: link {type(link).__name__} is not supported")


def gb_regressor(model, inputs: list[ast.Expr]) -> ast.Expr:
    _check_inputs(model, inputs)
    name = type(model).__name__
    if model.loss not in _GB_REGRESSOR_LOSSES:
        raise UnsupportedError(
            f"{name}: loss={model.loss!r} is not supported; supported: {_GB_REGRESSOR_LOSSES}"
        )
    # Every regression loss has the identity link: predict() is the raw sum.
    (margin,) = _margins(_gb_start(model), _gb_stages(model, inputs))
    return _null_if_missing(inputs, margin)


# -- HistGradientBoosting ----------------------------------------------------------------------


def _bitset_members(bitset: np.ndarray, n: int) -> set[int]:
    """Codes 0..n-1 set in a 256-bit bitset of 8 uint32 words (`_bitset.pyx`)."""
    return {c for c in range(n) if (int(bitset[c // 32]) >> (c % 32)) & 1}


def _any(tests: list[ast.BoolExpr]) -> ast.BoolExpr:
    # Balanced, so a long list of categories does not nest deeply in the SQL.
    if len(tests) == 1:
        return tests[0]
    mid = len(tests) // 2
    return ast.OrExpr(_any(tests[:mid]), _any(tests[mid:]))


class _Feature:
    """One HistGradientBoosting feature as the predictor sees it (after its preprocessor)."""

    def __init__(self, expr: ast.Expr, categories: np.ndarray | None, name: str):
        self.categories = categories
        self.strings = categories is not None and categories.dtype.kind in "OUS"
        if categories is None or not self.strings:
            self.expr = ast.as_double(expr)
        else:
            bad = [c for c in categories if not isinstance(c, str)]
            if bad:
                raise UnsupportedError(
                    f"{name}: categorical feature with non-string categories {bad[:3]} mixed "
                    "with strings is not supported"
                )
            self.expr = ast.as_string(expr)

    def is_in(self, codes: list[int]) -> ast.BoolExpr:
        assert self.categories is not None
        values = [self.categories[c] for c in codes]
        if self.strings:
            return _any([ast.StrEqExpr(self.expr, str(v)) for v in values])
        return _any([ast.CompExpr(self.expr, ast.num(v), ast.CompOpType.EQ) for v in values])


def _hgb_features(model, inputs: list[ast.Expr]) -> list[_Feature]:
    """Features in the predictor's order. With categorical features, HistGradientBoosting's
    preprocessor (a ColumnTransformer) puts the OrdinalEncoder's columns first, then the rest;
    a category's code is its index in the encoder's sorted `categories_`."""
    name = type(model).__name__
    pre = getattr(model, "_preprocessor", None)
    if pre is None:
        return [_Feature(x, None, name) for x in inputs]
    features: list[_Feature | None] = [None] * len(inputs)
    for step, trans, mask in pre.transformers_:
        cols = np.flatnonzero(np.asarray(mask, dtype=bool)) if len(mask) else []
        out = pre.output_indices_[step]
        if len(cols) != out.stop - out.start:
            raise UnsupportedError(f"{name}: unexpected preprocessor step {step!r}")
        for pos, col in zip(range(out.start, out.stop), cols, strict=True):
            if step == "encoder":
                cats = np.asarray(trans.categories_[pos - out.start])
                # The encoder lists a missing value last when training saw one; it is not a
                # category (NaN and None both take the missing route).
                keep = [not (c is None or (isinstance(c, float) and np.isnan(c))) for c in cats]
                features[pos] = _Feature(inputs[col], cats[np.asarray(keep, dtype=bool)], name)
            elif step == "numerical":
                features[pos] = _Feature(inputs[col], None, name)
            else:
                raise UnsupportedError(f"{name}: unexpected preprocessor step {step!r}")
    if any(f is None for f in features):
        raise UnsupportedError(f"{name}: its preprocessor drops input columns")
    return features  # type: ignore[return-value]


def _hgb_tree(predictor, features: list[_Feature], known: np.ndarray, f_idx: np.ndarray):
    nodes = predictor.nodes
    left_sets = predictor.raw_left_cat_bitsets

    def split(node) -> ast.BoolExpr | bool:
        f = features[int(node["feature_idx"])]
        missing_left = bool(node["missing_go_to_left"])
        if not node["is_categorical"]:
            test: ast.BoolExpr = ast.CompExpr(
                f.expr, ast.num(float(node["num_threshold"])), ast.CompOpType.LTE
            )
            return ast.OrExpr(ast.IsNullExpr(f.expr), test) if missing_left else test
        n = len(f.categories)
        lefts = _bitset_members(left_sets[int(node["bitset_idx"])], n)
        # Left bitset first, then known categories go right, anything else (unknown level,
        # NaN) takes the missing route: `_predict_one_from_raw_data`.
        rights = _bitset_members(known[int(f_idx[int(node["feature_idx"])])], n) - lefts
        if missing_left:
            if not rights:
                return True
            return ast.OrExpr(ast.IsNullExpr(f.expr), ast.NotExpr(f.is_in(sorted(rights))))
        if not lefts:
            return False
        return f.is_in(sorted(lefts))

    def build(i: int) -> ast.Expr:
        node = nodes[i]
        if node["is_leaf"]:
            return ast.num(float(node["value"]))
        test = split(node)
        if test is True:
            return build(int(node["left"]))
        if test is False:
            return build(int(node["right"]))
        return ast.IfExpr(test, build(int(node["left"])), build(int(node["right"])))

    return build(0)


def _hgb_margins(model, inputs: list[ast.Expr]) -> list[ast.Expr]:
    _check_inputs(model, inputs)
    features = _hgb_features(model, inputs)
    known, f_idx = model._bin_mapper.make_known_categories_bitsets()
    stages = [
        [_hgb_tree(p, features, known, f_idx) for p in iteration] for iteration in model._predictors
    ]
    # raw = zeros + baseline_prediction, then each predictor's output added in order.
    return _margins(np.asarray(model._baseline_prediction, dtype="float64")[0], stages)


def hgb_classifier(model, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    margins = _hgb_margins(model, inputs)
    link = model._loss.link
    if len(model.classes_) == 2 and isinstance(link, LogitLink):
        return ast.SigmoidExpr(margins[0])
    if len(model.classes_) > 2 and isinstance(link, MultinomialLogit):
        return ast.softmax(margins)
    raise UnsupportedError(
        f"{type(model).__name__}: loss {model.loss!r} with link {type(link).__name__} is not "
        "supported; supported: log_loss"
    )


def hgb_regressor(model, inputs: list[ast.Expr]) -> ast.Expr:
    (margin,) = _hgb_margins(model, inputs)
    link = model._loss.link
    if isinstance(link, IdentityLink):
        return margin
    if isinstance(link, LogLink):
        # poisson, gamma: predict() is exp(raw).
        return ast.ExpExpr(margin)
    raise UnsupportedError(
        f"{type(model).__name__}: loss {model.loss!r} with link {type(link).__name__} is not "
        "supported; supported: losses with the identity or log link"
    )


def decision_function(model, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    """What the classifier's `decision_function` returns: the raw margin (binary) or one raw
    margin per class, for wrappers that calibrate it (CalibratedClassifierCV)."""
    if isinstance(model, GradientBoostingClassifier):
        _check_inputs(model, inputs)
        raw = _margins(_gb_start(model), _gb_stages(model, inputs))
        margins = [ast.IdExpr(_null_if_missing(inputs, m), to_reuse=True) for m in raw]
    elif isinstance(model, HistGradientBoostingClassifier):
        margins = [ast.IdExpr(m, to_reuse=True) for m in _hgb_margins(model, inputs)]
    else:
        raise UnsupportedError(f"not supported: decision_function of {type(model).__name__}")
    return margins[0] if len(margins) == 1 else margins


ESTIMATORS: dict[type, Callable[[Any, list[ast.Expr]], ast.Expr | list[ast.Expr]]] = {
    GradientBoostingClassifier: gb_classifier,
    GradientBoostingRegressor: gb_regressor,
    HistGradientBoostingClassifier: hgb_classifier,
    HistGradientBoostingRegressor: hgb_regressor,
}

"""XGBoost 3 boosters (binary, multiclass, regression), with XGBoost's float32 arithmetic.

XGBoost reads every input as float32 and sends it left when `float32(x) < threshold` (a float32),
or to the node's default child when it is missing. Each output group (one per class) starts at
`base_score` taken through the objective's link and adds one leaf per tree *in float32*; the
margin becomes a probability in float32 too (`1.0f / (1.0f + expf(-m))`, softmax with a double
sum). The SQL repeats each of those float32 roundings with a cast to float32 and back
(`ast.Float32Expr`), keeping every cast's argument where no engine raises on it. See
docs/decisions/0011-xgboost-float32.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import xgboost
from xgboost import XGBClassifier, XGBRegressor

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers.sklearn_trees import boundary_test, float32_split
from mlsm_py.errors import UnsupportedError

# Probabilities and exp-link predictions are float32 values that may differ from XGBoost's by an
# ulp or two where glibc's expf is not correctly rounded (the SQL's is): the parity gate checks
# them at this tolerance instead of its float64 default (decision 0011). Margins and
# identity-link predictions are exact and keep the default.
FLOAT32_TOLERANCE = 1e-6

FLT_MAX = float(np.finfo(np.float32).max)
# A non-zero double at most this large in magnitude rounds to a float32 0 (the tie at 2^-150
# goes to the even 0), where PostgreSQL's cast raises "underflow".
F32_ROUNDS_TO_ZERO = 2.0**-150
# The smallest float32 whose expf() is +inf: at or above it XGBoost's exp overflows.
EXPF_OVERFLOW = float(np.float32(88.72283935546875))
# The largest float32 whose expf() is finite (3.4027985e38, below FLT_MAX).
EXPF_MAX_FINITE = float(np.nextafter(np.float32(EXPF_OVERFLOW), np.float32(-np.inf)))
# The smallest float32 whose expf() is not 0: e^z is just above 2^-150 (by a relative 7e-7,
# far more than exp()'s error), so it rounds up to float32's smallest subnormal; the float32
# below it gives 0 (glibc's expf agrees on both).
EXPF_MIN_NONZERO = -103.97207641601562
# Chain at most this many rounds of a float32 running sum in one expression before it becomes a
# shared column: each round nests one level deeper (a REAL addition); DuckDB refuses expressions
# nested over 1000 deep (max_expression_depth) and plans a single long sum slowly (500 terms:
# 2 s), while every extra column is an extra CTE stage. Measured in decision 0011.
ROUNDS_PER_COLUMN = 100
# A double beyond float32's range: it rounds to -inf (the tie at 2^128 - 2^103 rounds up, to
# the "even" infinity, because FLT_MAX's significand is odd).
_F32_OVERFLOW_EDGE = 2.0**128 - 2.0**103

CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")
IDENTITY_OBJECTIVES = (
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:pseudohubererror",
    "reg:absoluteerror",
    "reg:quantileerror",
)
LOGISTIC_OBJECTIVES = ("reg:logistic",)
EXP_OBJECTIVES = ("count:poisson", "reg:gamma", "reg:tweedie")
REGRESSOR_OBJECTIVES = IDENTITY_OBJECTIVES + LOGISTIC_OBJECTIVES + EXP_OBJECTIVES


# -- float32 arithmetic ----------------------------------------------------------------------


def _column(expr: ast.Expr) -> ast.Expr:
    """`expr` as a shared column, so that reading it several times computes it once."""
    if isinstance(expr, ast.NumVal | ast.ColumnRef) or (
        isinstance(expr, ast.IdExpr) and expr.to_reuse
    ):
        return expr
    return ast.IdExpr(expr, to_reuse=True)


def float32_round(x: ast.Expr) -> ast.Expr:
    """x rounded to float32 (ties to even), as a double. The caller keeps x where every engine
    rounds it without raising (see ast.Float32Expr)."""
    return ast.Float32Expr(x)


def _f32_op(a: ast.Expr, b: ast.Expr, op: ast.BinNumOpType) -> ast.Expr:
    # a op b for float32 a and b: the double result rounded once more to float32 is the float32
    # result (53 >= 2 * 24 + 2, so double rounding is innocuous for + - * /). A sum or
    # difference of float32 values is 0 or at least 2^-149 in magnitude: it never rounds to 0.
    return float32_round(ast.BinNumExpr(a, b, op))


def _f32_quotient(a: ast.Expr, b: ast.Expr) -> ast.Expr:
    """a / b in float32 for float32 columns a >= 0 and b >= 1 (a probability): 0 where the
    quotient rounds to a float32 0, which PostgreSQL's cast would refuse."""
    q = ast.BinNumExpr(a, b, ast.BinNumOpType.DIV)
    tiny = ast.CompExpr(q, ast.num(F32_ROUNDS_TO_ZERO), ast.CompOpType.LTE)
    return ast.IfExpr(tiny, ast.num(0.0), float32_round(q))


def float32_less_than(threshold: float) -> tuple[float, bool]:
    """(boundary, inclusive) with: float32(x) < t  <=>  x < boundary (x <= when inclusive),
    for a float32 threshold t. float32(x) < t means float32(x) <= the float32 just below t."""
    t = np.float32(threshold)
    if float(t) != threshold or not math.isfinite(threshold):
        raise UnsupportedError(f"XGBoost split threshold {threshold!r} is not a finite float32")
    with np.errstate(over="ignore"):
        below = np.nextafter(t, np.float32(-np.inf))
    if np.isinf(below):
        # t is -FLT_MAX: only values that overflow to -inf are below it.
        return -_F32_OVERFLOW_EDGE, True
    return float32_split(float(below))


# -- trees -----------------------------------------------------------------------------------


def _split_test(x: ast.Expr, threshold: float, default_left: bool) -> ast.BoolExpr:
    return boundary_test(x, *float32_less_than(threshold), default_left)


def _tree(tree: dict, xs: list[ast.Expr]) -> ast.Expr:
    left, right = tree["left_children"], tree["right_children"]
    feature, cond = tree["split_indices"], tree["split_conditions"]
    default_left = tree["default_left"]
    if any(int(s) != 0 for s in tree.get("split_type", ())):
        raise UnsupportedError(
            "not supported: XGBoost categorical splits (enable_categorical=True); one-hot "
            "encode categories in the pipeline instead (OneHotEncoder)"
        )
    if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise UnsupportedError(
            "not supported: XGBoost vector-leaf trees (multi_strategy='multi_output_tree')"
        )

    def build(node: int) -> ast.Expr:
        if left[node] == -1:
            # A leaf's value is stored in split_conditions, as a float32.
            return ast.num(float(np.float32(cond[node])))
        f = int(feature[node])
        if f >= len(xs):
            raise UnsupportedError(f"XGBoost tree splits on feature {f}; only {len(xs)} inputs")
        test = _split_test(xs[f], float(np.float32(cond[node])), bool(default_left[node]))
        return ast.IfExpr(test, build(left[node]), build(right[node]))

    return build(0)


# -- the booster -----------------------------------------------------------------------------


def _model_json(model: Any) -> dict:
    return json.loads(model.get_booster().save_raw(raw_format="json"))


def _check(model: Any, learner: dict, n_inputs: int) -> None:
    # Checked before anything is read from the trees, so the message names the real cause.
    name = type(model).__name__
    kind = learner["gradient_booster"]["name"]
    if kind != "gbtree":
        raise UnsupportedError(
            f"not supported: {name} with booster={kind!r}; supported: booster='gbtree'"
        )
    missing = model.missing
    if missing is not None and not (isinstance(missing, float) and math.isnan(missing)):
        raise UnsupportedError(
            f"not supported: {name} with missing={missing!r}; supported: missing=nan "
            "(NULL and NaN are missing)"
        )
    types = learner.get("feature_types") or []
    if any(t == "c" for t in types):
        raise UnsupportedError(
            f"not supported: {name} with categorical features (enable_categorical=True); "
            "one-hot encode categories in the pipeline instead (OneHotEncoder)"
        )
    params = learner["learner_model_param"]
    if int(params.get("num_target", "1")) != 1:
        raise UnsupportedError(f"not supported: multi-target {name}")
    if int(params["num_feature"]) != n_inputs:
        raise UnsupportedError(f"{name} expects {params['num_feature']} inputs, got {n_inputs}")


def _trees_used(model: Any, gbtree: dict) -> list[dict]:
    """The trees predict() and predict_proba() use: with early stopping, the sklearn API keeps
    the rounds up to best_iteration (inclusive); otherwise all of them."""
    trees = gbtree["trees"]
    try:
        rounds = int(model.best_iteration) + 1
    except AttributeError:
        return trees
    indptr = gbtree["iteration_indptr"]
    return trees[: indptr[min(rounds, len(indptr) - 1)]]


def _base_margins(model_json: dict, n_groups: int) -> list[float]:
    """Each group's starting margin: base_score after the objective's link (logit, log, or
    none), as XGBoost computes it in float32. XGBoost 3 stores it in probability space for
    binary:logistic but in margin space for multi:softprob, so XGBoost is asked directly: one
    row predicted by a copy of the booster whose leaves are all zero (m + 0.0f == m exactly)."""
    zeroed = json.loads(json.dumps(model_json))
    learner = zeroed["learner"]
    for tree in learner["gradient_booster"]["model"]["trees"]:
        tree["base_weights"] = [0.0] * len(tree["base_weights"])
        tree["split_conditions"] = [
            0.0 if child == -1 else c
            for c, child in zip(tree["split_conditions"], tree["left_children"], strict=True)
        ]
    booster = xgboost.Booster()
    booster.load_model(bytearray(json.dumps(zeroed).encode()))
    n_features = int(learner["learner_model_param"]["num_feature"])
    row = xgboost.DMatrix(np.zeros((1, n_features), dtype=np.float32))
    margin = booster.predict(row, output_margin=True, validate_features=False)
    values = np.asarray(margin, dtype=np.float32).reshape(-1)
    if len(values) != n_groups:
        raise UnsupportedError(f"XGBoost base margin has {len(values)} values, not {n_groups}")
    return [float(v) for v in values]


def objective(model_json: dict) -> str:
    return str(model_json["learner"]["objective"]["name"])


def _leaves(tree: dict) -> list[float]:
    return [
        float(np.float32(c))
        for c, child in zip(tree["split_conditions"], tree["left_children"], strict=True)
        if child == -1
    ]


def _check_margin_range(bases: list[float], used: list[dict], groups: list[int]) -> None:
    """Refuse a model whose float32 margin could overflow: the SQL's float32 casts raise there
    (DuckDB, PostgreSQL). |partial sum| <= |base| + the largest |leaf| of each tree so far, up
    to float32 rounding, which a factor of 2 of headroom covers for any number of rounds."""
    bound = [abs(b) for b in bases]
    for tree, group in zip(used, groups, strict=True):
        bound[group] += max(abs(v) for v in _leaves(tree))
    if max(bound) > FLT_MAX / 2:
        raise UnsupportedError(
            f"not supported: XGBoost model whose leaf values add up to {max(bound):.3g}; its "
            f"float32 margin could overflow (supported: |base| + sum of max |leaf| <= "
            f"{FLT_MAX / 2:.3g})"
        )


def margins(model: Any, inputs: list[ast.Expr], model_json: dict | None = None) -> list[ast.Expr]:
    """One float32 margin per output group (class), as predict(output_margin=True) gives it."""
    model_json = model_json if model_json is not None else _model_json(model)
    learner = model_json["learner"]
    _check(model, learner, len(inputs))
    gbtree = learner["gradient_booster"]["model"]
    params = learner["learner_model_param"]
    n_groups = max(int(params.get("num_class", "0")), 1)
    xs = [ast.as_double(x) for x in inputs]
    used = _trees_used(model, gbtree)
    groups = [int(g) for g in gbtree["tree_info"][: len(used)]]
    bases = _base_margins(model_json, n_groups)
    _check_margin_range(bases, used, groups)
    # Per group, in tree order: ((base + t0) + t1) + ..., each addition rounded to float32, as
    # XGBoost's CPU predictor accumulates. Each tree is a column; the running sum is one
    # expression (float32 arithmetic in SQL: every operand is marked as a float32 value, which
    # the base and the leaves are), cut into a column every ROUNDS_PER_COLUMN rounds.
    totals: list[ast.Expr] = [float32_round(ast.num(b)) for b in bases]
    rounds = [0] * n_groups
    for tree, group in zip(used, groups, strict=True):
        column = ast.IdExpr(float32_round(_tree(tree, xs)), to_reuse=True)
        totals[group] = _f32_op(totals[group], column, ast.BinNumOpType.ADD)
        rounds[group] += 1
        if rounds[group] % ROUNDS_PER_COLUMN == 0:
            totals[group] = ast.IdExpr(totals[group], to_reuse=True)
    return totals


# -- links -----------------------------------------------------------------------------------


def _if_lt(x: ast.Expr, bound: float, then: ast.Expr, orelse: ast.Expr) -> ast.Expr:
    return ast.IfExpr(ast.CompExpr(x, ast.num(bound), ast.CompOpType.LT), then, orelse)


def _if_gt(x: ast.Expr, bound: float, then: ast.Expr, orelse: ast.Expr) -> ast.Expr:
    return ast.IfExpr(ast.CompExpr(x, ast.num(bound), ast.CompOpType.GT), then, orelse)


def _expf(z: ast.Expr) -> ast.Expr:
    """float32 expf(z) for a float32 z, as a column: exp() in double, rounded to float32; 0
    below EXPF_MIN_NONZERO. Where expf overflows (z >= EXPF_OVERFLOW) this gives
    expf(EXPF_MAX_FINITE): callers test for that themselves. glibc's expf is not always
    correctly rounded: about 1 argument in 1,600 gets the other neighbour (one float32 ulp),
    which is the only inexact step of this module."""
    z = _column(z)
    # The clamp keeps exp() and the cast in range for every row (PostgreSQL raises on exp()
    # underflow, on float32 overflow and on a non-zero value rounding to 0), even on an
    # engine that evaluated both branches of the CASE.
    high = _if_gt(z, EXPF_MAX_FINITE, ast.num(EXPF_MAX_FINITE), z)
    clamped = _if_lt(z, EXPF_MIN_NONZERO, ast.num(EXPF_MIN_NONZERO), high)
    e = _if_lt(z, EXPF_MIN_NONZERO, ast.num(0.0), ast.ExpExpr(clamped))
    return ast.IdExpr(float32_round(e), to_reuse=True)


def sigmoid32(m: ast.Expr) -> ast.Expr:
    """XGBoost's `1.0f / (1.0f + expf(-m))` for a float32 margin m."""
    m = _column(m)
    e = _expf(ast.BinNumExpr(m, ast.num(-1.0), ast.BinNumOpType.MUL))
    # 1 <= denom <= FLT_MAX, so 1 / denom is at least 2.9e-39: no cast here can raise.
    one = float32_round(ast.num(1.0))
    denom = _f32_op(one, e, ast.BinNumOpType.ADD)
    p = _f32_op(one, denom, ast.BinNumOpType.DIV)
    # At -m >= EXPF_OVERFLOW, expf is inf and the probability exactly 0.
    return ast.IfExpr(ast.CompExpr(m, ast.num(-EXPF_OVERFLOW), ast.CompOpType.LTE), ast.num(0.0), p)


def exp32(m: ast.Expr) -> ast.Expr:
    """XGBoost's `expf(m)` (log-link objectives), +inf where float32 overflows."""
    m = _column(m)
    e = _expf(m)
    over = ast.CompExpr(m, ast.num(EXPF_OVERFLOW), ast.CompOpType.GTE)
    return ast.IfExpr(over, ast.num(math.inf), e)


def softprob32(ms: list[ast.Expr]) -> list[ast.Expr]:
    """XGBoost's Softmax: wmax = max (float32), e_i = expf(m_i - wmax), a *double* sum of the
    e_i, and e_i / (float)sum in float32."""
    ms = [_column(m) for m in ms]
    top = ast.IdExpr(ast.MaxExpr(ms), to_reuse=True)
    es = [_expf(_f32_op(m, top, ast.BinNumOpType.SUB)) for m in ms]
    # 1 <= total <= number of classes (the top class's e is 1).
    total = ast.IdExpr(float32_round(ast.add_all(es)), to_reuse=True)
    return [ast.IdExpr(_f32_quotient(e, total), to_reuse=True) for e in es]


def scipy_softmax32(ms: list[ast.Expr]) -> list[ast.Expr]:
    """scipy.special.softmax on float32 margins (XGBClassifier.predict_proba for multi:softmax):
    as softprob32, but numpy sums the exponentials in float32. numpy's vectorised float32 exp
    is off by one ulp more often than glibc's expf (a few % of arguments)."""
    ms = [_column(m) for m in ms]
    top = ast.IdExpr(ast.MaxExpr(ms), to_reuse=True)
    es = [_expf(_f32_op(m, top, ast.BinNumOpType.SUB)) for m in ms]
    total = es[0]
    for e in es[1:]:
        total = _f32_op(total, e, ast.BinNumOpType.ADD)
    total = _column(total)
    return [ast.IdExpr(_f32_quotient(e, total), to_reuse=True) for e in es]


# -- estimators ------------------------------------------------------------------------------


def _through_expf(scores: ast.Expr | list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    """Declare the parity tolerance of scores that went through expf (Assembled.tolerance)."""
    for score in scores if isinstance(scores, list) else [scores]:
        score.tolerance = FLOAT32_TOLERANCE
    return scores


def classifier(model: Any, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    model_json = _model_json(model)
    name = objective(model_json)
    if name not in CLASSIFIER_OBJECTIVES:
        raise UnsupportedError(
            f"not supported: XGBClassifier with objective {name!r}; supported: "
            f"{', '.join(CLASSIFIER_OBJECTIVES)}"
        )
    ms = margins(model, inputs, model_json)
    n_classes = len(model.classes_)
    if name == "binary:logistic":
        if n_classes != 2 or len(ms) != 1:
            raise UnsupportedError(f"XGBClassifier: binary:logistic with {n_classes} classes")
        return _through_expf(sigmoid32(ms[0]))
    if len(ms) != n_classes:
        raise UnsupportedError(f"XGBClassifier: {len(ms)} margins for {n_classes} classes")
    return _through_expf(softprob32(ms) if name == "multi:softprob" else scipy_softmax32(ms))


def regressor(model: Any, inputs: list[ast.Expr]) -> ast.Expr:
    model_json = _model_json(model)
    name = objective(model_json)
    if name not in REGRESSOR_OBJECTIVES:
        raise UnsupportedError(
            f"not supported: XGBRegressor with objective {name!r}; supported: "
            f"{', '.join(REGRESSOR_OBJECTIVES)}"
        )
    ms = margins(model, inputs, model_json)
    if len(ms) != 1:
        raise UnsupportedError(f"not supported: XGBRegressor with {len(ms)} outputs")
    if name in LOGISTIC_OBJECTIVES:
        return _through_expf(sigmoid32(ms[0]))
    if name in EXP_OBJECTIVES:
        return _through_expf(exp32(ms[0]))
    return ms[0]


ESTIMATORS: dict[type, Callable[..., Any]] = {
    XGBClassifier: classifier,
    XGBRegressor: regressor,
}

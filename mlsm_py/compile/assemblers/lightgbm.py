"""LightGBM boosters (numerical splits). LightGBM compares in float64; missing values follow
each node's missing type and default direction, as in LightGBM's NumericalDecision:

- missing type None: NaN is read as 0.0 and compared like any value;
- missing type Zero: NaN and |x| <= 1e-35 (kZeroThreshold, a float) take the default side;
- missing type NaN: NaN takes the default side.
"""

from __future__ import annotations

import numpy as np

from mlsm_py.compile import ast
from mlsm_py.errors import UnsupportedError

# LightGBM's kZeroThreshold is the float literal 1e-35f, widened to double when compared.
ZERO_THRESHOLD = float(np.float32(1e-35))


def _split_test(x: ast.Expr, node: dict) -> ast.BoolExpr:
    if node["decision_type"] != "<=":
        raise UnsupportedError(
            f"not supported: LightGBM split with decision type {node['decision_type']!r} "
            "(categorical splits come in a later release)"
        )
    threshold = ast.num(float(node["threshold"]))
    missing = node["missing_type"]
    default_left = bool(node["default_left"])
    if missing == "None":
        return ast.CompExpr(ast.CoalesceExpr(x, ast.num(0.0)), threshold, ast.CompOpType.LTE)
    le = ast.CompExpr(x, threshold, ast.CompOpType.LTE)
    if missing == "NaN":
        return ast.OrExpr(ast.IsNullExpr(x), le) if default_left else le
    if missing == "Zero":
        is_zero = ast.CompExpr(ast.AbsExpr(x), ast.num(ZERO_THRESHOLD), ast.CompOpType.LTE)
        if default_left:
            return ast.OrExpr(ast.OrExpr(ast.IsNullExpr(x), is_zero), le)
        return ast.AndExpr(le, ast.NotExpr(is_zero))
    raise UnsupportedError(f"not supported: LightGBM missing type {missing!r}")


def _tree(node: dict, xs: list[ast.Expr]) -> ast.Expr:
    if "leaf_value" in node:
        return ast.num(float(node["leaf_value"]))
    test = _split_test(xs[node["split_feature"]], node)
    return ast.IfExpr(test, _tree(node["left_child"], xs), _tree(node["right_child"], xs))


def _raw_score(model, inputs: list[ast.Expr]) -> tuple[ast.Expr, str]:
    booster = model.booster_
    dump = booster.dump_model()
    if dump.get("num_tree_per_iteration", 1) != 1:
        raise UnsupportedError(
            "not supported: LightGBM multiclass (one tree per class) in this release"
        )
    if len(inputs) != dump["max_feature_idx"] + 1:
        raise UnsupportedError(
            f"LightGBM model expects {dump['max_feature_idx'] + 1} inputs, got {len(inputs)}"
        )
    xs = [ast.as_double(x) for x in inputs]
    trees = [ast.IdExpr(_tree(t["tree_structure"], xs), to_reuse=True) for t in dump["tree_info"]]
    total = ast.add_all(trees)
    if dump.get("average_output"):
        total = ast.BinNumExpr(total, ast.num(len(trees)), ast.BinNumOpType.DIV)
    return total, dump["objective"]


def classifier(model, inputs: list[ast.Expr]) -> ast.Expr:
    total, objective = _raw_score(model, inputs)
    parts = objective.split()
    if parts[0] != "binary" or len(model.classes_) != 2:
        raise UnsupportedError(f"not supported: LGBMClassifier with objective {objective!r}")
    sigmoid = 1.0
    for p in parts[1:]:
        if p.startswith("sigmoid:"):
            sigmoid = float(p.split(":", 1)[1])
    margin = total if sigmoid == 1.0 else ast.BinNumExpr(
        total, ast.num(sigmoid), ast.BinNumOpType.MUL
    )
    return ast.SigmoidExpr(ast.IdExpr(margin, to_reuse=True))


IDENTITY_OBJECTIVES = {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}


def regressor(model, inputs: list[ast.Expr]) -> ast.Expr:
    total, objective = _raw_score(model, inputs)
    name = objective.split()[0]
    if name not in IDENTITY_OBJECTIVES:
        raise UnsupportedError(
            f"not supported: LGBMRegressor objective {name!r}; supported: "
            f"{', '.join(sorted(IDENTITY_OBJECTIVES))}"
        )
    return total

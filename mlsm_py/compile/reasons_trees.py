"""Saabas path contributions of tree ensembles, per family (docs/decisions/0021-reason-codes.md).

Each tree is read twice from the fitted model: its routing, rebuilt by the family's own scoring
assembler with every leaf's value replaced by the leaf's id, so a row reaches the same leaf in
the reason SQL as in the score SQL (NULL routing, float32 boundaries, LightGBM's zero band and
category sets included); and its node values, from which each leaf gets one constant
contribution per split feature on its path. A contribution is therefore a lookup on the leaf id:
no per-row arithmetic beyond the CASE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from xgboost import XGBClassifier, XGBRegressor

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import lightgbm as lgbm
from mlsm_py.compile.assemblers import sklearn_boosting as sb
from mlsm_py.compile.assemblers import sklearn_trees as skt
from mlsm_py.compile.assemblers import xgboost as xgb
from mlsm_py.errors import UnsupportedError


@dataclass(frozen=True)
class PathTree:
    """One tree: `leaf` is the leaf id a row reaches (a shared column); `paths[leaf_id]` maps a
    split feature (the estimator's input index) to that leaf's contribution; `root` is the
    value at the root, the tree's share of the expected value."""

    leaf: ast.Expr | None
    paths: dict[int, dict[int, float]]
    root: float


@dataclass(frozen=True)
class Ensemble:
    """margin = offset + (sum over trees of the leaf value) / divisor.

    `null_guard`, when set, wraps every contribution (GradientBoosting scores NULL for a row
    with a missing input, so its contributions are NULL too)."""

    trees: list[PathTree]
    offset: float
    divisor: float
    margin: ast.Expr
    null_guard: Callable[[ast.Expr], ast.Expr] | None = None
    tolerance: float | None = None


def _paths(
    root: int,
    children: Callable[[int], tuple[int, int] | None],
    feature: Callable[[int], int],
    value: Callable[[int], float],
    diff: Callable[[float, float], float] = lambda child, parent: child - parent,
) -> dict[int, dict[int, float]]:
    """leaf -> {feature: sum of diff(value(child), value(parent)) over the path's edges whose
    parent splits on that feature}, added in root-to-leaf order as treeinterpreter does."""
    out: dict[int, dict[int, float]] = {}
    stack: list[tuple[int, dict[int, float]]] = [(root, {})]
    while stack:
        node, acc = stack.pop()
        kids = children(node)
        if kids is None:
            out[node] = acc
            continue
        f, v = feature(node), value(node)
        for child in kids:
            step = dict(acc)
            step[f] = step.get(f, 0.0) + diff(value(child), v)
            stack.append((child, step))
    return out


# -- scikit-learn trees --------------------------------------------------------------------------


def _sk_tree(tree: Any, xs: list[ast.Expr], values: np.ndarray, route_missing: bool) -> PathTree:
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    # Leaves numbered 0..L-1 in node order (not by node index, which counts the inner nodes
    # too): a lookup array per tree and input is then as long as the tree has leaves.
    is_leaf = left == -1
    dense = np.cumsum(is_leaf) - 1
    ids = np.where(is_leaf, dense, 0).astype("float64")
    leaf = ast.IdExpr(skt.tree_expr(tree, xs, ids, route_missing=route_missing), to_reuse=True)
    paths = _paths(
        0,
        lambda n: None if left[n] == -1 else (int(left[n]), int(right[n])),
        lambda n: int(feature[n]),
        lambda n: float(values[n]),
    )
    paths = {int(dense[n]): acc for n, acc in paths.items()}
    return PathTree(leaf if left[0] != -1 else None, paths, float(values[0]))


def _sk_values(model: Any, tree: Any) -> np.ndarray:
    """What predict / predict_proba returns at each node: the positive-class probability
    (binary classifier), or the regression value."""
    if getattr(model, "n_outputs_", 1) != 1:
        raise UnsupportedError(f"reason codes: multi-output {type(model).__name__} not supported")
    if hasattr(model, "classes_"):
        if len(model.classes_) != 2:
            raise UnsupportedError(
                f"reason codes: {type(model).__name__} with {len(model.classes_)} classes; "
                "only binary classifiers are supported"
            )
        return skt._leaf_probas(model, tree)[:, 1]
    return np.asarray(tree.value[:, 0, 0], dtype="float64")


def _sk_single(model: Any, xs: list[ast.Expr]) -> Ensemble:
    skt._check_inputs(model, xs)
    t = _sk_tree(model.tree_, xs, _sk_values(model, model.tree_), True)
    fn = skt.tree_classifier if hasattr(model, "classes_") else skt.tree_regressor
    margin = fn(model, xs)
    assert not isinstance(margin, list)
    return Ensemble([t], 0.0, 1.0, margin)


def _sk_forest(model: Any, xs: list[ast.Expr]) -> Ensemble:
    skt._check_inputs(model, xs)
    trees = [_sk_tree(e.tree_, xs, _sk_values(model, e.tree_), True) for e in model.estimators_]
    fn = skt.forest_classifier if hasattr(model, "classes_") else skt.forest_regressor
    margin = fn(model, xs)
    assert not isinstance(margin, list)
    # predict_proba / predict average the trees: so do the contributions.
    return Ensemble(trees, 0.0, float(len(trees)), margin)


def _gb(model: Any, xs: list[ast.Expr]) -> Ensemble:
    sb._check_inputs(model, xs)
    name = type(model).__name__
    if hasattr(model, "classes_"):
        if len(model.classes_) != 2:
            raise UnsupportedError(f"reason codes: multiclass {name} not supported")
        margin = sb.decision_function(model, xs)
    else:
        margin = sb.gb_regressor(model, xs)
    assert not isinstance(margin, list)
    (start,) = sb._gb_start(model)
    lr = float(model.learning_rate)
    # route_missing=False and NULL contributions where an input is NULL: GradientBoosting
    # refuses NaN, and its margin is NULL there (decision 0010).
    trees = [
        _sk_tree(est.tree_, xs, lr * est.tree_.value[:, 0, 0], False)
        for (est,) in model.estimators_
    ]
    return Ensemble(trees, float(start), 1.0, margin, lambda e: sb._null_if_missing(xs, e))


def _hgb(model: Any, xs: list[ast.Expr]) -> Ensemble:
    sb._check_inputs(model, xs)
    name = type(model).__name__
    if model.n_trees_per_iteration_ != 1:
        raise UnsupportedError(f"reason codes: multiclass {name} not supported")
    if hasattr(model, "classes_"):
        margin = sb.decision_function(model, xs)
    else:
        (margin,) = sb._hgb_margins(model, xs)
    assert not isinstance(margin, list)
    features = sb._hgb_features(model, xs)
    known, f_idx = model._bin_mapper.make_known_categories_bitsets()
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        ids = nodes.copy()
        ids["value"] = np.arange(len(nodes), dtype="float64")
        shim = SimpleNamespace(nodes=ids, raw_left_cat_bitsets=predictor.raw_left_cat_bitsets)
        leaf = sb._hgb_tree(shim, features, known, f_idx)

        # Only leaves carry the shrunk value; an inner node's stored value is unshrunk, so the
        # node value used is the training-count-weighted mean of its leaves (as XGBoost weights
        # by cover).
        def kids(n: int, nodes=nodes) -> tuple[int, int] | None:
            return None if nodes[n]["is_leaf"] else (int(nodes[n]["left"]), int(nodes[n]["right"]))

        values = _weighted_means(
            kids,
            lambda n, nodes=nodes: float(nodes[n]["value"]),
            lambda n, nodes=nodes: float(nodes[n]["count"]),
            len(nodes),
        )
        paths = _paths(
            0,
            kids,
            lambda n, nodes=nodes: int(nodes[n]["feature_idx"]),
            lambda n, values=values: values[n],
        )
        # A split decided for every row (a category set covering all levels) is pruned from the
        # routing; its edge contributions still telescope along the path the row takes.
        shared = leaf if isinstance(leaf, ast.NumVal) else ast.IdExpr(leaf, to_reuse=True)
        trees.append(PathTree(shared, paths, values[0]))
    start = float(np.asarray(model._baseline_prediction, dtype="float64").ravel()[0])
    return Ensemble(trees, start, 1.0, margin)


def _weighted_means(children, leaf_value, weight, n: int) -> list[float]:
    out = [0.0] * n
    order: list[int] = []
    stack = [0]
    while stack:
        node = stack.pop()
        order.append(node)
        kids = children(node)
        if kids is not None:
            stack.extend(kids)
    for node in reversed(order):
        kids = children(node)
        if kids is None:
            out[node] = leaf_value(node)
        else:
            a, b = kids
            out[node] = (out[a] * weight(a) + out[b] * weight(b)) / (weight(a) + weight(b))
    return out


# -- LightGBM -----------------------------------------------------------------------------------


def _with_leaf_ids(node: dict) -> dict:
    if "leaf_value" in node:
        return {**node, "leaf_value": float(node.get("leaf_index", 0))}
    return {
        **node,
        "left_child": _with_leaf_ids(node["left_child"]),
        "right_child": _with_leaf_ids(node["right_child"]),
    }


def _lgbm(model: Any, xs: list[ast.Expr]) -> Ensemble:
    dump = lgbm._dump(model)
    words = str(dump["objective"]).split()
    if int(dump.get("num_tree_per_iteration", 1)) != 1:
        raise UnsupportedError(
            f"reason codes: {type(model).__name__} with objective {words[0]!r} (several trees "
            "per iteration) not supported; supported: binary and single-output regression"
        )
    if isinstance(model, LGBMClassifier):
        ok = words[0] in ("binary", "cross_entropy") and len(model.classes_) == 2
    else:
        ok = words[0] in (*lgbm.IDENTITY_OBJECTIVES, *lgbm.EXP_OBJECTIVES, *lgbm.SIGMOID_OBJECTIVES)
    if not ok:
        raise UnsupportedError(
            f"reason codes: {type(model).__name__} with objective {words[0]!r} not supported; "
            "supported: binary classification and the regression objectives to_sql supports"
        )
    # The margin is the raw score (before the sigmoid or exp link).
    (totals, _) = lgbm._raw_scores(model, xs)
    levels = lgbm._string_features(model.booster_, dump)
    typed = [ast.as_string(x) if i in levels else ast.as_double(x) for i, x in enumerate(xs)]
    trees = []
    for info in dump["tree_info"]:
        root = info["tree_structure"]
        if "leaf_value" in root:
            trees.append(PathTree(None, {0: {}}, float(root["leaf_value"])))
            continue
        nodes: dict[int, dict] = {}

        def index(node: dict, nodes: dict[int, dict] = nodes) -> int:
            # Leaves by leaf_index, inner nodes after them: one integer id space per tree.
            key = node["leaf_index"] if "leaf_value" in node else -1 - node["split_index"]
            nodes[key] = node
            return key

        def kids(key: int, nodes: dict[int, dict] = nodes) -> tuple[int, int] | None:
            node = nodes[key]
            if "leaf_value" in node:
                return None
            return index(node["left_child"]), index(node["right_child"])

        def value(key: int, nodes: dict[int, dict] = nodes) -> float:
            node = nodes[key]
            return float(node["leaf_value"] if "leaf_value" in node else node["internal_value"])

        paths = _paths(
            index(root), kids, lambda k, nodes=nodes: int(nodes[k]["split_feature"]), value
        )
        leaf = ast.IdExpr(lgbm._tree(_with_leaf_ids(root), typed, levels), to_reuse=True)
        trees.append(PathTree(leaf, paths, float(root["internal_value"])))
    divisor = float(len(trees)) if dump.get("average_output") else 1.0
    return Ensemble(trees, 0.0, divisor, totals[0])


# -- XGBoost ------------------------------------------------------------------------------------


def _xgb_mean_values(tree: dict) -> list[np.float32]:
    """XGBoost's FillNodeMeanValue: a leaf's value, else the children's values weighted by
    their sum_hessian over the node's, in float32 as XGBoost computes them."""
    left, right = tree["left_children"], tree["right_children"]
    cond = [np.float32(c) for c in tree["split_conditions"]]
    hess = [np.float32(h) for h in tree["sum_hessian"]]
    out = [np.float32(0.0)] * len(left)

    def fill(n: int) -> np.float32:
        if left[n] == -1:
            out[n] = cond[n]
            return out[n]
        a, b = left[n], right[n]
        r = np.float32(fill(a) * hess[a])
        r = np.float32(r + np.float32(fill(b) * hess[b]))
        out[n] = np.float32(r / hess[n])
        return out[n]

    fill(0)
    return out


def _xgb(model: Any, xs: list[ast.Expr]) -> Ensemble:
    model_json = xgb._model_json(model)
    learner = model_json["learner"]
    xgb._check(model, learner, len(xs))
    name = xgb.objective(model_json)
    supported = ("binary:logistic", *xgb.REGRESSOR_OBJECTIVES)
    if name not in supported:
        raise UnsupportedError(
            f"reason codes: {type(model).__name__} with objective {name!r} not supported; "
            f"supported: {', '.join(supported)}"
        )
    (margin,) = xgb.margins(model, xs, model_json)
    used = xgb._trees_used(model, learner["gradient_booster"]["model"])
    (base,) = xgb._base_margins(model_json, 1)
    typed = [ast.as_double(x) for x in xs]
    trees = []
    for tree in used:
        left, right, feature = tree["left_children"], tree["right_children"], tree["split_indices"]
        means = _xgb_mean_values(tree)
        if left[0] == -1:
            trees.append(PathTree(None, {0: {}}, float(means[0])))
            continue
        ids = dict(tree)
        ids["split_conditions"] = [
            float(i) if child == -1 else c
            for i, (c, child) in enumerate(zip(tree["split_conditions"], left, strict=True))
        ]
        leaf = ast.IdExpr(xgb._tree(ids, typed), to_reuse=True)
        paths = _paths(
            0,
            lambda n, left=left, right=right: None if left[n] == -1 else (left[n], right[n]),
            lambda n, feature=feature: int(feature[n]),
            lambda n, means=means: float(means[n]),
            # approx_contribs takes each step's difference in float32.
            lambda c, p: float(np.float32(np.float32(c) - np.float32(p))),
        )
        trees.append(PathTree(leaf, paths, float(means[0])))
    return Ensemble(trees, float(base), 1.0, margin, tolerance=xgb.FLOAT32_TOLERANCE)


FAMILIES: dict[type, Callable[[Any, list[ast.Expr]], Ensemble]] = {
    DecisionTreeClassifier: _sk_single,
    DecisionTreeRegressor: _sk_single,
    RandomForestClassifier: _sk_forest,
    RandomForestRegressor: _sk_forest,
    ExtraTreesClassifier: _sk_forest,
    ExtraTreesRegressor: _sk_forest,
    GradientBoostingClassifier: _gb,
    GradientBoostingRegressor: _gb,
    HistGradientBoostingClassifier: _hgb,
    HistGradientBoostingRegressor: _hgb,
    LGBMClassifier: _lgbm,
    LGBMRegressor: _lgbm,
    XGBClassifier: _xgb,
    XGBRegressor: _xgb,
}

"""scikit-learn decision trees and forests.

scikit-learn casts inputs to float32 and then compares them with float64 thresholds; a NaN input
follows the node's learned `missing_go_to_left`. Both are reproduced exactly: see
`float32_split` and docs/decisions/0002-float32-splits-as-double-boundaries.md.
"""

from __future__ import annotations

import numpy as np

from mlsm_py.compile import ast
from mlsm_py.errors import UnsupportedError

_F32_INF = np.float32(np.inf)


def float32_split(threshold: float) -> tuple[float, bool]:
    """Return (boundary, inclusive) with: float32(x) <= threshold  <=>  x <= / < boundary.

    Rounding a double to float32 is monotonic, so the doubles that round to a float32 value at
    or below the threshold form a down-set. Its upper edge is the midpoint between f, the largest
    float32 <= threshold, and the next float32 above f: exactly representable as a double. A
    double equal to the midpoint rounds to the neighbour with an even significand.
    """
    f = np.float32(threshold)
    if float(f) > threshold:
        f = np.nextafter(f, -_F32_INF)
    up = np.nextafter(f, _F32_INF)
    boundary = (float(f) + float(up)) / 2.0
    inclusive = int(f.view(np.uint32)) & 1 == 0
    return boundary, inclusive


def _split_test(x: ast.Expr, threshold: float, missing_left: bool) -> ast.BoolExpr:
    return boundary_test(x, *float32_split(threshold), missing_left)


def boundary_test(
    x: ast.Expr, boundary: float, inclusive: bool, missing_left: bool
) -> ast.BoolExpr:
    """The test that sends a row left: x below the boundary (or at it when inclusive), or x
    missing when missing values go left."""
    op = ast.CompOpType.LTE if inclusive else ast.CompOpType.LT
    goes_left: ast.BoolExpr = ast.CompExpr(x, ast.num(boundary), op)
    if missing_left:
        return ast.OrExpr(ast.IsNullExpr(x), goes_left)
    # A NULL comparison is not true, so a missing value takes the ELSE (right) branch.
    return goes_left


def tree_expr(
    tree, inputs: list[ast.Expr], leaf: np.ndarray, *, route_missing: bool = True
) -> ast.Expr:
    """The tree as nested IF expressions; `leaf[node]` is the output at each leaf node.

    `route_missing=False` ignores `missing_go_to_left` (a NULL takes the right branch): for
    estimators that refuse NaN and guard NULL inputs themselves (GradientBoosting)."""
    left, right = tree.children_left, tree.children_right
    feature, threshold = tree.feature, tree.threshold
    missing_left = getattr(tree, "missing_go_to_left", None) if route_missing else None
    xs = [ast.as_double(x) for x in inputs]

    def build(node: int) -> ast.Expr:
        if left[node] == -1:
            return ast.num(leaf[node])
        goes_left = bool(missing_left[node]) if missing_left is not None else False
        test = _split_test(xs[feature[node]], float(threshold[node]), goes_left)
        return ast.IfExpr(test, build(left[node]), build(right[node]))

    return build(0)


def _check_inputs(model, inputs: list[ast.Expr]) -> None:
    if model.n_features_in_ != len(inputs):
        raise UnsupportedError(
            f"{type(model).__name__} expects {model.n_features_in_} inputs, got {len(inputs)}"
        )


def _leaf_probas(model, tree) -> np.ndarray:
    """(nodes, classes): each node's class probabilities exactly as predict_proba returns them.

    Since scikit-learn 1.4 a classifier tree stores class fractions in `value` and
    DecisionTreeClassifier.predict_proba returns them without renormalising (1.7.2:
    `self.tree_.predict(X)[:, :n_classes_]`); dividing by the row sum again would move a
    probability by an ulp."""
    if getattr(model, "n_outputs_", 1) != 1:
        raise UnsupportedError(f"not supported: multi-output {type(model).__name__}")
    return np.asarray(tree.value[:, 0, : len(model.classes_)], dtype="float64")


def _per_class(model, probas: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """Binary: the positive class's column; multiclass: one column per class."""
    if len(model.classes_) == 2:
        return probas[:, 1]
    return [probas[:, k] for k in range(len(model.classes_))]


def tree_classifier(model, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    _check_inputs(model, inputs)
    leaves = _per_class(model, _leaf_probas(model, model.tree_))
    if isinstance(leaves, list):
        return [tree_expr(model.tree_, inputs, leaf) for leaf in leaves]
    return tree_expr(model.tree_, inputs, leaves)


def tree_regressor(model, inputs: list[ast.Expr]) -> ast.Expr:
    _check_inputs(model, inputs)
    if model.n_outputs_ != 1:
        raise UnsupportedError(f"not supported: multi-output {type(model).__name__}")
    return tree_expr(model.tree_, inputs, model.tree_.value[:, 0, 0])


def _mean_of_trees(trees: list[ast.Expr]) -> ast.Expr:
    # Each tree becomes its own column; the forest sums the columns in estimator order (as
    # predict_proba accumulates them into zeros) and divides by the number of trees.
    cols = [ast.IdExpr(t, to_reuse=True) for t in trees]
    return ast.BinNumExpr(ast.add_all(cols), ast.num(len(cols)), ast.BinNumOpType.DIV)


def forest_classifier(model, inputs: list[ast.Expr]) -> ast.Expr | list[ast.Expr]:
    _check_inputs(model, inputs)
    leaves = [_per_class(model, _leaf_probas(model, est.tree_)) for est in model.estimators_]
    trees = [est.tree_ for est in model.estimators_]
    if len(model.classes_) == 2:
        return _mean_of_trees([tree_expr(t, inputs, v) for t, v in zip(trees, leaves, strict=True)])
    return [
        _mean_of_trees([tree_expr(t, inputs, v[k]) for t, v in zip(trees, leaves, strict=True)])
        for k in range(len(model.classes_))
    ]


def forest_regressor(model, inputs: list[ast.Expr]) -> ast.Expr:
    _check_inputs(model, inputs)
    if model.n_outputs_ != 1:
        raise UnsupportedError(f"not supported: multi-output {type(model).__name__}")
    trees = [est.tree_ for est in model.estimators_]
    return _mean_of_trees([tree_expr(t, inputs, t.value[:, 0, 0]) for t in trees])

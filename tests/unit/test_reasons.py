"""Reason codes as AST, without a warehouse: what is refused, how contributions are attributed,
and that the leaf-id trees route exactly as the scoring trees do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from mlsm_py.compile import assemble, ast
from mlsm_py.compile.layout import flatten_sum
from mlsm_py.compile.reasons import contributions, linear_means, source_of, top_reasons
from mlsm_py.errors import UnsupportedError


def _frame(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "city": rng.choice(["x", "y", "z"], size=n).astype(object),
        }
    )
    y = (df["a"] + (df["city"] == "x") + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    return df, y.to_numpy()


def _pipeline(model) -> Pipeline:
    ct = ColumnTransformer(
        [
            ("num", StandardScaler(), ["a", "b"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"]),
        ]
    )
    return Pipeline([("prep", ct), ("model", model)])


def _shape(node: ast.Expr) -> tuple:
    """A node's structure and constants, comparable across separately built trees (our nodes
    have no __str__ of their own)."""
    scalars = tuple(
        (a, repr(getattr(node, a)))
        for a in ("name", "value", "op", "sql_type", "to_reuse")
        if hasattr(node, a) and not isinstance(getattr(node, a), ast.Expr)
    )
    return (type(node).__name__, scalars, tuple(_shape(c) for c in ast.children(node)))


def _walk(expr: ast.Expr):
    stack, seen = [expr], set()
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            yield node
            stack.extend(ast.children(node))


# -- refusals -----------------------------------------------------------------------------------


def test_unsupported_estimator_is_named() -> None:
    df, y = _frame()
    model = _pipeline(KNeighborsClassifier()).fit(df, y)
    with pytest.raises(UnsupportedError, match="KNeighborsClassifier is not supported"):
        contributions(model)


def test_multiclass_forest_is_refused() -> None:
    df, _ = _frame()
    y = np.arange(len(df)) % 3
    model = RandomForestClassifier(n_estimators=2, max_depth=2).fit(df[["a", "b"]], y)
    with pytest.raises(UnsupportedError, match="3 classes"):
        contributions(model)


def test_treeshap_is_not_offered_silently() -> None:
    df, y = _frame()
    model = RandomForestClassifier(n_estimators=2, max_depth=2).fit(df[["a", "b"]], y)
    with pytest.raises(UnsupportedError, match="method 'treeshap'"):
        contributions(model, method="treeshap")


def test_linear_needs_means_or_background() -> None:
    df, y = _frame()
    model = _pipeline(LogisticRegression()).fit(df, y)
    with pytest.raises(UnsupportedError, match="training means"):
        contributions(model)


def test_k_must_fit_the_inputs() -> None:
    df, y = _frame()
    model = _pipeline(LogisticRegression()).fit(df, y)
    c = contributions(model, df)
    with pytest.raises(UnsupportedError, match="k=4"):
        top_reasons(c, 4)


# -- linear -------------------------------------------------------------------------------------


def test_stored_means_give_the_same_contributions_as_the_background() -> None:
    df, y = _frame()
    model = _pipeline(LogisticRegression()).fit(df, y)
    means = linear_means(model, df)
    # 2 scaled numbers + 3 one-hot levels; a scaled training column has mean ~0.
    assert len(means) == 5 and abs(means[0]) < 1e-12
    assert means[2:] == pytest.approx([(df["city"] == v).mean() for v in "xyz"])
    a, b = contributions(model, df), contributions(model, means=means)
    assert a.expected == b.expected
    assert [_shape(t) for t in a.terms] == [_shape(t) for t in b.terms]
    coef, b0 = model[-1].coef_[0], model[-1].intercept_[0]
    assert a.expected == pytest.approx(b0 + float(np.dot(coef, means)), abs=1e-15)


def test_one_hot_levels_are_one_reason() -> None:
    df, y = _frame()
    model = _pipeline(LogisticRegression()).fit(df, y)
    c = contributions(model, df)
    assert c.inputs == ("a", "b", "city")
    # The city term reads only the city column, all three levels of it.
    assert {source_of(c.terms[2])} == {"city"}
    reads = [n for n in _walk(c.terms[2]) if isinstance(n, ast.StrEqExpr)]
    assert {n.value for n in reads} == {"x", "y", "z"}


# -- trees --------------------------------------------------------------------------------------


def _if_tests(expr: ast.Expr) -> list[str]:
    """The split tests of a tree in pre-order (the routing, independent of leaf values)."""
    while isinstance(expr, ast.IdExpr):
        expr = expr.expr
    if not isinstance(expr, ast.IfExpr):
        return []
    return [_shape(expr.test), *_if_tests(expr.body), *_if_tests(expr.orelse)]


def test_leaf_ids_route_with_the_scoring_trees_tests() -> None:
    df, y = _frame()
    df.loc[::7, "a"] = np.nan
    model = _pipeline(LGBMClassifier(n_estimators=5, num_leaves=7, verbose=-1, n_jobs=1)).fit(df, y)
    c = contributions(model)
    # The score is sigmoid(tree_1 + ... + tree_5), each tree a shared column.
    score = assemble(model).score
    assert isinstance(score, ast.SigmoidExpr)
    score_trees = sorted((_if_tests(t) for t in flatten_sum(score.expr.expr)), key=repr)
    # A leaf-id column is what a lookup reads: an IndexExpr's index, or a CASE's operand.
    looked_up = [
        n.expr if isinstance(n, ast.IndexExpr) else getattr(n, "left", None)
        for t in c.terms
        for n in _walk(t)
        if isinstance(n, ast.IndexExpr | ast.CompExpr)
    ]
    leaf_ids = {
        id(x): x for x in looked_up if isinstance(x, ast.IdExpr) and isinstance(x.expr, ast.IfExpr)
    }
    leaf_trees = sorted((_if_tests(t) for t in leaf_ids.values()), key=repr)
    assert leaf_trees == score_trees and len(leaf_trees) == 5


def test_contributions_are_leaf_constants_of_the_path() -> None:
    # y depends on a only: every contribution is a's; b and c are exactly 0 in every leaf.
    x = pd.DataFrame({"a": np.arange(8.0), "b": np.ones(8), "c": np.zeros(8)})
    y = np.array([0, 0, 1, 1, 4, 4, 8, 8], dtype="float64")
    model = DecisionTreeRegressor(max_depth=2).fit(x, y)
    c = contributions(model)
    assert c.expected == pytest.approx(y.mean())
    assert [_shape(t) for t in c.terms[1:]] == [_shape(ast.IdExpr(ast.num(0.0), True))] * 2
    lookup = c.terms[0].expr
    # Leaf ids are the leaves' ranks in node order: 0..L-1.
    n_leaves = int((model.tree_.children_left == -1).sum())
    values = [_at_leaf(lookup, float(leaf)) for leaf in range(n_leaves)]
    # Leaves: the means of {0,0}, {1,1}, {4,4}, {8,8} minus the overall mean 3.25.
    assert values == pytest.approx([-3.25, -2.25, 0.75, 4.75])


_CMP = {
    ast.CompOpType.LT: lambda a, b: a < b,
    ast.CompOpType.EQ: lambda a, b: a == b,
}


def _at_leaf(lookup: ast.Expr, leaf_id: float) -> float:
    """A leaf-id lookup (an array indexed by the leaf id, or tests on the leaf id with constant
    branches) evaluated for one leaf."""
    if isinstance(lookup, ast.IndexExpr):
        return lookup.values[int(leaf_id)]
    while isinstance(lookup, ast.IfExpr):
        assert isinstance(lookup.test.left, ast.IdExpr)
        goes = _CMP[lookup.test.op](leaf_id, lookup.test.right.value)
        lookup = lookup.body if goes else lookup.orelse
    return lookup.value

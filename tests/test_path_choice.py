"""The SQL / Python-model choice: what it counts on the compiled AST and where it lands.

The constants are fitted to bench/score_throughput.py (docs/decisions/0013); these tests pin the
counting they rest on, and that the demo-shaped models land on the side the benchmark measured
faster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.path import choose_path, estimate, tree_work


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(20_000, 6)), columns=[f"x{i}" for i in range(6)])
    noise = rng.normal(scale=1.5, size=len(X))
    y = ((X.x0 * X.x1 + np.sin(3 * X.x2) + X.x3 + noise) > 0).astype(int).to_numpy()
    return X, y


def _leaf_depths(tree) -> list[int]:
    t = tree.tree_
    depths, stack = [], [(0, 0)]
    while stack:
        node, d = stack.pop()
        if t.children_left[node] == -1:
            depths.append(d)
        else:
            stack += [(t.children_left[node], d + 1), (t.children_right[node], d + 1)]
    return depths


def test_counts_a_decision_tree(data):
    X, y = data
    tree = DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)
    work = tree_work(assemble(tree))
    depths = _leaf_depths(tree)
    assert work.cases == 1
    assert work.splits == tree.tree_.node_count - len(depths)
    assert work.tests_per_row == pytest.approx(np.mean(depths))
    assert work.float32_steps == 0


def test_counts_every_tree_of_a_forest_once(data):
    X, y = data
    forest = RandomForestClassifier(n_estimators=7, max_depth=4, random_state=0).fit(X, y)
    work = tree_work(assemble(forest))
    assert work.cases == 7
    assert work.splits == sum(e.tree_.node_count - len(_leaf_depths(e)) for e in forest.estimators_)
    assert work.tests_per_row == pytest.approx(
        sum(np.mean(_leaf_depths(e)) for e in forest.estimators_)
    )


def test_counts_xgboost_trees_behind_its_float32_steps(data):
    """XGBoost's probability is a guarded float32 quotient (a CASE) over the float32 margin:
    the trees sit below it and must still be counted, with the float32 rounding steps."""
    X, y = data
    model = XGBClassifier(n_estimators=12, max_depth=3, random_state=0).fit(X, y)
    work = tree_work(assemble(model))
    splits = sum(d.count("[") for d in model.get_booster().get_dump())
    # + the few single-purpose CASEs around the trees (the quotient's guard, the expf clamps)
    assert splits <= work.splits <= splits + 8
    assert 12 <= work.cases <= 12 + 8
    assert work.float32_steps >= 12  # at least one rounding per tree added to the margin


def test_linear_model_takes_sql(data):
    X, y = data
    choice = choose_path(*_both(LogisticRegression().fit(X, y)))
    assert choice.path == "sql"
    assert "no CASE expressions" in choice.reason


def test_deep_forest_takes_the_python_model_path(data):
    """The demo forest's shape (60 trees, depth 8): measured 2x slower in SQL than in Python."""
    X, y = data
    forest = RandomForestClassifier(n_estimators=60, max_depth=8, random_state=0, n_jobs=2)
    choice = choose_path(*_both(forest.fit(X, y)))
    assert choice.path == "python"
    assert "SQL expected slower" in choice.reason and "split nodes" in choice.reason


def test_small_boosted_model_takes_sql(data):
    """The demo LightGBM's shape (150 trees of 15 leaves): measured faster in SQL."""
    X, y = data
    model = LGBMClassifier(n_estimators=150, num_leaves=15, verbose=-1, random_state=0)
    sql, python, _ = estimate(*_both(model.fit(X, y)))
    assert sql < python
    assert choose_path(*_both(model)).path == "sql"


def test_choice_is_deterministic(data):
    X, y = data
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(X, y)
    assert choose_path(*_both(forest)) == choose_path(*_both(forest))


def _both(estimator):
    return estimator, assemble(estimator)

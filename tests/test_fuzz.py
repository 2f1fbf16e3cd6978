"""Fuzzed parity (`mlsm verify --fuzz N`): the generated rows reach every routing case, and a
mismatch between SQL and the library is found and counted."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlsm_py.compile.assemblers import assemble
from mlsm_py.parity.fuzz import fuzz_parity, fuzz_table
from mlsm_py.parity.gate import HOSTILE_LEVELS, input_types

ROWS = 20_000


def _fit(seed: int):
    rng = np.random.default_rng(seed)
    n = 1500
    x = rng.normal(size=n)
    x[rng.random(n) < 0.1] = np.nan
    z = rng.uniform(0, 100, n)
    c = rng.choice(["a", "b", "c"], n).astype(object)
    y = ((np.nan_to_num(x) > 0.2) ^ (c == "b") ^ (z > 70)).astype(int)
    X = pd.DataFrame({"x": x, "z": z, "c": c})
    model = Pipeline(
        [
            (
                "cols",
                ColumnTransformer(
                    [
                        ("num", "passthrough", ["x", "z"]),
                        (
                            "cat",
                            Pipeline(
                                [
                                    (
                                        "imp",
                                        SimpleImputer(strategy="constant", fill_value="missing"),
                                    ),
                                    (
                                        "oh",
                                        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                    ),
                                ]
                            ),
                            ["c"],
                        ),
                    ]
                ),
            ),
            ("rf", RandomForestClassifier(n_estimators=15, max_depth=6, random_state=seed)),
        ]
    )
    return model.fit(X, y), X


@pytest.fixture(scope="module")
def fitted():
    return _fit(0)


def test_fuzzed_rows_cover_every_routing_case(fitted):
    model, X = fitted
    assembled = assemble(model)
    types = input_types(assembled)
    table = fuzz_table(types, X, ROWS, seed=1, assembled=assembled)
    assert table.num_rows == ROWS
    x = table.column("x")
    values = x.to_numpy(zero_copy_only=False)
    assert x.null_count > 0 and np.isnan(values[x.is_valid().to_numpy(False)]).any()
    # +-inf and values beyond float32 appear, in few rows (the library refuses them one by one).
    odd = np.abs(np.nan_to_num(values, nan=0.0, posinf=np.inf)) > 3.0e38
    assert np.isinf(values).any() and 0 < odd.sum() <= ROWS // 100
    # Both float32 neighbours of the thresholds the trees compare x with.
    from mlsm_py.parity.gate import _compared_constants, neighbours

    present = set(values[np.isfinite(values)].tolist())
    thresholds = sorted(_compared_constants(assembled)["x"])
    hit = sum(all(v in present for v in neighbours(t)) for t in thresholds)
    assert hit >= 0.9 * len(thresholds)
    levels = set(table.column("c").to_pylist())
    assert {"a", "b", "c", None} <= levels and set(HOSTILE_LEVELS) & levels


@pytest.mark.parametrize("path", ["sql", "python"])
def test_fuzz_parity_holds(fitted, path):
    model, X = fitted
    assembled = assemble(model)
    types = input_types(assembled)
    table = fuzz_table(types, X, ROWS, seed=2, assembled=assembled)
    report = fuzz_parity(model, duckdb.connect(), table, types, assembled=assembled, path=path)
    assert report.rows_generated == ROWS
    assert report.parity.passed and report.rows_above_tolerance == 0
    # scikit-learn refuses +-inf: those rows are reported, not silently compared.
    assert 0 < report.parity.rows_refused_by_estimator <= ROWS // 100
    assert report.parity.rows_checked + report.parity.rows_refused_by_estimator == ROWS


def test_fuzz_finds_a_model_that_routes_differently(fitted):
    """SQL compiled from another fit stands in for a compiler bug: the fuzz must see it."""
    model, X = fitted
    other, _ = _fit(1)
    assembled = assemble(other)
    types = input_types(assemble(model))
    table = fuzz_table(types, X, 5000, seed=3, assembled=assemble(model))
    report = fuzz_parity(model, duckdb.connect(), table, types, assembled=assembled)
    assert not report.parity.passed
    assert report.rows_above_tolerance > 1000
    worst = report.parity.worst_row
    assert not math.isclose(worst["python_score"], worst["sql_score"])


def test_fuzz_gates_xgboost_at_its_declared_float32_tolerance():
    """XGBoost computes its probabilities in float32 (glibc expf): the SQL reproduces them to
    ~1e-7, and the fuzz gate uses the tolerance the compiled model declares, as check_parity
    does, instead of failing the model at 1e-9."""
    from xgboost import XGBClassifier

    rng = np.random.default_rng(5)
    n = 3000
    X = pd.DataFrame({"x": rng.normal(size=n), "z": rng.uniform(0, 100, n)})
    X.loc[rng.random(n) < 0.1, "x"] = np.nan
    y = np.digitize(X.z + 20 * rng.normal(size=n), [33, 66])  # three classes: softmax
    model = XGBClassifier(n_estimators=60, max_depth=5, random_state=0).fit(X, y)
    assembled = assemble(model)
    assert assembled.tolerance == pytest.approx(1e-6)
    types = input_types(assembled)
    table = fuzz_table(types, X, 5000, seed=4, assembled=assembled)
    strict = fuzz_parity(model, duckdb.connect(), table, types, assembled=assembled, tolerance=1e-9)
    assert strict.rows_above_tolerance > 0  # float32 rounding shows at 1e-9 ...
    report = fuzz_parity(model, duckdb.connect(), table, types, assembled=assembled)
    assert report.parity.tolerance == pytest.approx(1e-6)
    assert report.parity.passed and report.rows_above_tolerance == 0  # ... and only there
    assert report.parity.max_abs_diff < 1e-6

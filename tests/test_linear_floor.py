"""A logistic regression at its arithmetic floor (issue 14): the scaler folded into the weights,
so each input costs one multiply-add on what the imputer yields, and no per-row NaN step for
the inputs a `fields` contract keeps finite. Checked on the SQL's shape (what the engine is
asked to compute) and by parity in DuckDB on rows with NULLs, extremes and large offsets; the
speed itself is measured by bench/score_throughput.py, never here."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlglot
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from sqlglot import exp

from mlsm_py.compile import to_sql
from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.flow.compiled import assemble_for, contract_finite
from mlsm_py.parity.fuzz import fuzz_parity, fuzz_table
from mlsm_py.parity.gate import TOLERANCE, check_parity, input_types
from mlsm_py.spec import Field
from models_py.leads import logreg

COLS = [f"x{i}" for i in range(6)]


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 3000
    # Offsets far from zero and scales far from one: where folding (x - mean) / scale * w into
    # x * (w / scale) + constant could lose precision if it were done carelessly.
    X = pd.DataFrame(
        rng.normal(size=(n, len(COLS))) * [1, 30, 0.01, 1e4, 5, 1] + [0, 1e5, -3, 2e6, 0, 50],
        columns=COLS,
    )
    for c in ("x1", "x3"):
        X.loc[rng.random(n) < 0.05, c] = np.nan
    y = ((X["x0"] + (X["x2"] + 3) * 50 + rng.normal(size=n)) > 0).astype(int).to_numpy()
    return X, y


def _margin_ops(sql: str) -> dict[str, int]:
    """Arithmetic outside the saturating sigmoid's CASE: what every row pays for the margin."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    counts = {"mul": 0, "div": 0, "sub": 0, "nullif": 0}
    for node in tree.walk():
        if node.find_ancestor(exp.Case) is not None:
            continue
        counts["mul"] += isinstance(node, exp.Mul)
        counts["div"] += isinstance(node, exp.Div)
        counts["sub"] += isinstance(node, exp.Sub)
        counts["nullif"] += isinstance(node, exp.Nullif)
    return counts


SCALERS = [StandardScaler(), RobustScaler(), MinMaxScaler(), MaxAbsScaler()]


@pytest.mark.parametrize("scaler", SCALERS, ids=lambda s: type(s).__name__)
def test_scaler_is_folded_into_the_weights(frame, scaler) -> None:
    X, y = frame
    model = make_pipeline(SimpleImputer(strategy="median"), scaler, LogisticRegression())
    model.fit(X, y)
    ops = _margin_ops(to_sql(model, "t", key="id"))
    # One multiply per input, nothing else per row: no centring, no division by the scale.
    assert ops["mul"] == len(COLS)
    assert ops["div"] == 0 and ops["sub"] == 0
    report = check_parity(model, duckdb.connect(), X.iloc[:500])
    assert report.passed, report
    assert report.max_abs_diff <= TOLERANCE


def test_folded_regression_keeps_parity_at_large_offsets(frame) -> None:
    X, _ = frame
    target = X["x3"].fillna(0) * 1e-3 + X["x1"].fillna(0) * 2.0
    model = make_pipeline(SimpleImputer(), StandardScaler(), LinearRegression())
    model.fit(X, target)
    con = duckdb.connect()
    con.register("t", X.assign(id=np.arange(len(X))))
    got = con.execute(to_sql(model, "t", key="id") + " ORDER BY id").fetchnumpy()["score"]
    want = model.predict(X)
    # Relative to the score's size: the products are the same float64 values up to rounding.
    rel = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    assert rel.max() <= TOLERANCE


def _model_fields(kind: str = "double") -> list[Field]:
    return [Field(c, kind) for c in COLS]


def test_contract_finite_inputs_skip_the_nan_step(frame) -> None:
    X, y = frame
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression())
    model.fit(X, y)
    m = dataclasses.replace(logreg, fields=_model_fields()[:4])  # x4, x5 undeclared
    assert contract_finite(m) == {"x0", "x1", "x2", "x3"}
    assembled = assemble_for(m, model)
    assert assembled.finite == {"x0", "x1", "x2", "x3"}
    sql = SqlEmitter("duckdb").render(assembled, "t", "id")
    # Only the undeclared inputs still turn NaN into NULL row by row.
    assert _margin_ops(sql)["nullif"] == 2
    assert _margin_ops(to_sql(model, "t", key="id"))["nullif"] == len(COLS)
    # The gate feeds no NaN/inf to the declared inputs (a build never scores them), and
    # passes on the rest: NULLs, extremes, the undeclared inputs' NaN.
    report = check_parity(model, duckdb.connect(), X.iloc[:300], assembled=assembled)
    assert report.passed, report
    types = input_types(assembled, X)
    table = fuzz_table(types, X, 2000, seed=5, assembled=assembled)
    for c in sorted(assembled.finite):
        values = table.column(c).to_numpy(zero_copy_only=False)
        assert np.isfinite(values[~np.isnan(values)]).all()
    fuzz = fuzz_parity(model, duckdb.connect(), table, types, assembled=assembled)
    assert fuzz.parity.passed, fuzz.parity
    assert fuzz.rows_above_tolerance == 0


def test_contract_does_not_cover_integer_or_category_fields() -> None:
    fields = [Field("a", "double"), Field("b", "integer"), Field("c", "category")]
    m = SimpleNamespace(fields=fields)
    # Integer fields have no finite check (a DOUBLE column declared integer may hold NaN).
    assert contract_finite(m) == {"a"}


def test_bare_estimator_keeps_the_nan_step(frame) -> None:
    X, y = frame
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, y)
    assert assemble(model).finite == frozenset()
    con = duckdb.connect()
    rows = X.iloc[:3].assign(id=[0, 1, 2])
    rows.loc[1, "x0"] = np.nan
    con.register("t", rows)
    got = con.execute(to_sql(model, "t", key="id") + " ORDER BY id").fetchnumpy()["score"]
    np.testing.assert_allclose(got, model.predict_proba(rows[COLS])[:, 1], rtol=0, atol=1e-12)

"""The compiler's Python target on its own: SQL's three-valued logic, IEEE division and
overflow, and source kept shallow for deep or long expressions."""

from __future__ import annotations

import math

import duckdb
import pytest

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.python_emitter import compile_python
from mlsm_py.errors import ParityError
from mlsm_py.parity import gate as gate_mod

X = ast.ColumnRef("x", "double")
S = ast.ColumnRef("s", "string")


def _sql_values(expr: ast.Expr, rows: list[dict]) -> list:
    """The same expression as the SQL emitter writes it, run in DuckDB."""
    con = duckdb.connect()
    con.execute("create table t (k integer, x double, s varchar)")
    con.executemany(
        "insert into t values (?, ?, ?)", [(i, r.get("x"), r.get("s")) for i, r in enumerate(rows)]
    )
    sql = SqlEmitter("duckdb").render(Assembled(("s", "x"), expr, "regressor"), "t", "k")
    return [r[1] for r in con.execute(f"select * from ({sql}) order by k").fetchall()]


ROWS = [{"x": v, "s": s} for v in (None, -1.0, 0.0, 2.5, 1e308) for s in (None, "a", "b")]


def _agree(expr: ast.Expr) -> None:
    py = compile_python([("score", expr)])
    got = [py.score(r)["score"] for r in ROWS]
    want = [math.nan if v is None else v for v in _sql_values(expr, ROWS)]
    for g, w, r in zip(got, want, ROWS, strict=True):
        assert (math.isnan(g) and math.isnan(w)) or g == w, (r, g, w)


def _if(test: ast.Expr) -> ast.Expr:
    return ast.IfExpr(test, ast.num(1.0), ast.num(0.0))


@pytest.mark.parametrize(
    "test",
    [
        ast.NotExpr(ast.CompExpr(X, ast.num(0.0), ast.CompOpType.GT)),  # NOT NULL is not true
        ast.NotExpr(ast.CompExpr(X, ast.num(0.0), ast.CompOpType.EQ)),
        ast.NotExpr(ast.StrEqExpr(S, "a")),
        ast.NotExpr(
            ast.OrExpr(ast.StrEqExpr(S, "a"), ast.CompExpr(X, ast.num(0.0), ast.CompOpType.LT))
        ),
        ast.NotExpr(
            ast.AndExpr(ast.IsNullExpr(S), ast.CompExpr(X, ast.num(0.0), ast.CompOpType.LTE))
        ),
        ast.OrExpr(ast.IsNullExpr(X), ast.StrEqExpr(S, "b")),
    ],
)
def test_three_valued_logic_matches_sql(test):
    _agree(_if(test))


def test_arithmetic_matches_sql_at_the_edges():
    _agree(ast.BinNumExpr(ast.num(1.0), X, ast.BinNumOpType.DIV))  # 1/0 is inf, not an error
    _agree(ast.ExpExpr(X))  # exp(1e308) overflows to inf
    _agree(ast.CoalesceExpr(X, ast.num(7.0)))
    _agree(ast.SigmoidExpr(ast.BinNumExpr(X, ast.num(3.0), ast.BinNumOpType.MUL)))


def test_long_sums_and_chains_compile_and_add_in_sql_order():
    terms = [ast.BinNumExpr(X, ast.num(0.1 * i), ast.BinNumOpType.MUL) for i in range(3000)]
    _agree(ast.add_all(terms))
    chain: ast.Expr = ast.num(-1.0)
    for i in range(1500):
        chain = ast.IfExpr(ast.CompExpr(X, ast.num(float(i)), ast.CompOpType.EQ), ast.num(i), chain)
    _agree(chain)


def test_gate_refuses_a_fit_the_evaluator_disagrees_with(monkeypatch):
    """The third leg is a real check: an evaluator that drifts from the library fails the gate
    even though the SQL agrees."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    model = LogisticRegression().fit(df, (df.a + rng.normal(size=300) > 0).astype(int))
    good = gate_mod.check_parity(model, duckdb.connect(), df)
    assert good.passed and good.evaluator_max_abs_diff <= 1e-12

    real = gate_mod.evaluator_outputs
    monkeypatch.setattr(gate_mod, "evaluator_outputs", lambda a, rows: real(a, rows) + 1e-6)
    bad = gate_mod.check_parity(model, duckdb.connect(), df)
    assert bad.sql_passed and not bad.evaluator_passed and not bad.passed
    with pytest.raises(ParityError, match="serving evaluator disagrees"):
        gate_mod.gate("m", 1, bad)

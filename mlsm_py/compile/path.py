"""Choosing the scoring path per model: SQL in the warehouse, or a dbt Python model.

Both paths cost time in proportion to the rows scored, so the choice does not depend on the
table size: per million rows, the SQL path costs a scan and a write plus the CASE work of the
trees, and the Python-model path costs moving the rows through Arrow into the library (and its
preprocessing) and back, plus the library's own prediction. The choice is a static estimate, not
a timing taken at compile time, so the same fit always gets the same path and the same generated
file. The constants were fitted to bench/score_throughput.py at 1,000,000 rows (DuckDB 1.4.4, 2
threads, scikit-learn 1.7.2, LightGBM 4.6.0, XGBoost 3.2.0); the measurements and the fit are in
docs/decisions/0013-large-ensemble-layout.md. All costs are wall seconds per million rows.

SQL: DuckDB evaluates a CASE tree vector by vector (2,048 rows): every split node costs a
fixed amount per vector whatever reaches it, and every row pays for the tests on its own path;
XGBoost's float32 steps each cost a cast through REAL. So

    sql = SQL_BASE + SQL_PER_SPLIT * splits + SQL_PER_TEST * tests_per_row
          + SQL_PER_FLOAT32 * float32_steps

where `splits` is the number of split nodes in all CASE trees and `tests_per_row` the sum over
trees of the mean leaf depth (the tests a row makes, with every leaf taken as equally likely).

Python model: reading and converting the input columns and the pipeline's preprocessing cost
about the same for every model (PY_BASE, the demo's logistic regression: one-hot encoding
included); the prediction scales with the tests each row makes in the library's compiled tree
walker, at a rate that depends on the library:

    python = PY_BASE + PY_PER_TEST[family] * tests_per_row

The estimate is a model of two engines fitted to one benchmark; on other data it was off by up
to 1.7x. So it decides alone only when one route is estimated CLEAR_CALL times faster than the
other. A closer call is measured on the fit's own holdout rows in the warehouse
(`flow.probe.measure`), and the measurement decides; the fit records it, so the route follows
from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled

# -- calibration (wall s per 1M rows; see the decision record for the measurements) ----------
SQL_BASE = 0.25
SQL_PER_SPLIT = 0.0012
SQL_PER_TEST = 0.0021
SQL_PER_FLOAT32 = 0.01
PY_BASE = 2.95
PY_PER_TEST = {
    "lightgbm": 0.0055,
    "xgboost": 0.0033,
    "sklearn_hist": 0.0088,
    "sklearn_tree": 0.0045,
    "other": 0.0055,
}
# One route estimated this many times faster than the other: decided without measuring.
CLEAR_CALL = 3.0


@dataclass(frozen=True)
class Measured:
    """Both routes timed on the same `rows` rows (wall s, best of the runs)."""

    rows: int
    sql_s: float
    plan_s: float
    python_s: float

    def per_million(self) -> tuple[float, float]:
        """(SQL, Python model) per 1M rows: planning once, the rest in proportion to rows."""
        scale = 1e6 / self.rows
        return self.plan_s + max(0.0, self.sql_s - self.plan_s) * scale, self.python_s * scale


@dataclass(frozen=True)
class PathChoice:
    path: str  # "sql" or "python"
    reason: str
    estimate: tuple[float, float] | None = None  # (SQL, Python) s per 1M rows, static
    measured: Measured | None = None

    def timing(self) -> dict | None:
        """What the registry keeps of the choice (fits.route_timing)."""
        if self.estimate is None:
            return None
        out: dict = {"estimated_per_1m_s": {"sql": self.estimate[0], "python": self.estimate[1]}}
        if self.measured is not None:
            sql, python = self.measured.per_million()
            out["measured"] = {
                "rows": self.measured.rows,
                "sql_s": self.measured.sql_s,
                "plan_s": self.measured.plan_s,
                "python_s": self.measured.python_s,
                "per_1m_s": {"sql": sql, "python": python},
            }
        return out


@dataclass(frozen=True)
class TreeWork:
    """What the SQL asks of the engine: CASE expressions (trees, and the one-hot columns of a
    pipeline), their split nodes, the tests a row makes in them, and float32 rounding steps."""

    cases: int
    splits: int
    tests_per_row: float
    float32_steps: int = 0


def tree_work(assembled: Assembled) -> TreeWork:
    """Counted on the AST, each shared sub-expression (e.g. a tree) once."""
    cases = splits = float32 = 0
    tests = 0.0
    seen: set[int] = set()
    stack = [e for _, e in assembled.outputs()]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        float32 += isinstance(node, ast.Float32Expr)
        if isinstance(node, ast.IfExpr):
            n, depth, below = _tree(node)
            cases += 1
            splits += n
            tests += depth
            # What the tree's tests and leaves read: inputs and shared columns, or, for a CASE
            # that is not a tree (XGBoost's guarded quotient), the whole margin.
            stack.extend(below)
            continue
        stack.extend(ast.children(node))
    return TreeWork(cases, splits, tests, float32)


def _tree(root: ast.IfExpr) -> tuple[int, float, list[ast.Expr]]:
    """(split nodes, mean leaf depth, what the tests and leaves read) of a tree of IfExprs,
    without recursion."""
    splits = leaves = 0
    depth_sum = 0
    below: list[ast.Expr] = []
    stack: list[tuple[ast.Expr, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.IfExpr):
            splits += 1
            below.append(node.test)
            stack.append((node.body, depth + 1))
            stack.append((node.orelse, depth + 1))
        else:
            leaves += 1
            depth_sum += depth
            below.append(node)
    return splits, depth_sum / leaves, below


def family(estimator: Any) -> str:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    name = type(final).__module__ + "." + type(final).__name__
    if name.startswith("lightgbm."):
        return "lightgbm"
    if name.startswith("xgboost."):
        return "xgboost"
    if "HistGradientBoosting" in name:
        return "sklearn_hist"
    if name.startswith("sklearn.ensemble.") or name.startswith("sklearn.tree."):
        return "sklearn_tree"
    return "other"


def estimate(estimator: Any, assembled: Assembled) -> tuple[float, float, TreeWork]:
    """(SQL, Python model) wall seconds per million rows, and the tree work they rest on."""
    work = tree_work(assembled)
    sql = (
        SQL_BASE
        + SQL_PER_SPLIT * work.splits
        + SQL_PER_TEST * work.tests_per_row
        + SQL_PER_FLOAT32 * work.float32_steps
    )
    python = PY_BASE + PY_PER_TEST[family(estimator)] * work.tests_per_row
    return sql, python, work


def choose_path(
    estimator: Any, assembled: Assembled, measure: Callable[[], Measured] | None = None
) -> PathChoice:
    """The faster route. `measure` times both routes (see `flow.probe`); it is called only
    when the estimate is not a clear call, and then its result decides."""
    sql, python, work = estimate(estimator, assembled)
    shape = (
        f"{work.cases:,} CASE expressions, {work.splits:,} split nodes, "
        f"~{work.tests_per_row:,.0f} tests per row"
        if work.cases
        else "no CASE expressions"
    )
    if measure is not None and max(sql, python) < CLEAR_CALL * min(sql, python):
        m = measure()
        sql_m, python_m = m.per_million()
        # The text is the decision, not the numbers (those are in route_timing): the same
        # outcome writes the same generated file.
        faster = "SQL" if sql_m <= python_m else "the Python model"
        reason = f"measured on {m.rows:,} holdout rows: {faster} faster ({shape})"
        path = "sql" if sql_m <= python_m else "python"
        return PathChoice(path, reason, (sql, python), m)
    est = f"estimated per 1M rows: SQL {sql:.1f} s, Python model {python:.1f} s ({shape})"
    if sql <= python:
        return PathChoice("sql", est, (sql, python))
    return PathChoice("python", est + ": SQL expected slower", (sql, python))

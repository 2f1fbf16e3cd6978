"""The parity suite on the second engines: every registered estimator family, fitted with a fixed
seed, compiled for PostgreSQL (and, marked `spark`, for Spark SQL), run there on holdout rows
plus the gate's adversarial rows (NULL, NaN, +-inf, extremes, float32/float64 neighbours of every
threshold, unseen and hostile levels) and compared with the library's own predict_proba /
predict at the same 1e-9 tolerance as on DuckDB. Engine-specific numerics (NUMERIC literals,
float overflow and underflow errors) have tests of their own below."""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.base import is_classifier, is_regressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from threadpoolctl import threadpool_limits

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import ESTIMATORS, Assembled
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.errors import UnsupportedError
from mlsm_py.parity.gate import TOLERANCE, ParityReport, check_parity
from mlsm_py.warehouse.engines import DuckDBEngine, engine_for
from tests.test_compile_parity import (
    N_HOLDOUT,
    N_ROWS,
    PARITY_TOLERANCE,
    SEED,
    _dataset,
    _preprocess,
)
from tests.test_compile_xgboost import FLOAT32_TOLERANCE as XGB_FLOAT32_TOLERANCE

try:  # only to name the error PostgreSQL raises; the fixture decides skip or fail
    from psycopg2.errors import NumericValueOutOfRange
except ImportError:  # pragma: no cover

    class NumericValueOutOfRange(Exception):  # type: ignore[no-redef]
        pass


pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning"),
    # The generic small settings below do not converge for every linear model; parity is
    # about the fitted coefficients, whatever they are.
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:Maximum number of iteration:UserWarning"),
]


@pytest.fixture(autouse=True)
def _one_thread():
    # The gate predicts its odd rows one at a time; each HistGradientBoosting predict starts an
    # OpenMP team, which on 2 shared cores took 13-28 s per gate instead of 1 s.
    with threadpool_limits(1):
        yield


# -- the case list ---------------------------------------------------------------------------

# Small, fast models; a parameter an estimator does not have is left out.
SMALL = {"random_state": SEED, "n_estimators": 10, "max_depth": 4, "n_jobs": 1}
OVERRIDES: dict[str, dict] = {
    "LogisticRegression": {"max_iter": 1000},
    "LGBMClassifier": {"num_leaves": 15, "learning_rate": 0.2, "verbose": -1},
    "LGBMRegressor": {"num_leaves": 15, "learning_rate": 0.2, "verbose": -1},
    "HistGradientBoostingClassifier": {"max_iter": 10},
    "HistGradientBoostingRegressor": {"max_iter": 10},
    "XGBClassifier": {"verbosity": 0},
    "XGBRegressor": {"verbosity": 0},
}
# Types that share an assembler with the family's first type but fit differently.
ALSO = ("ExtraTreesClassifier",)
# Multiclass labels as strings, one of which must be quoted as a column name; XGBoost only
# accepts the codes 0..K-1.
CLASS_LABELS = np.array(["cold", "warm", "Hot Lead"], dtype=object)
CODE_LABELS = ("XGBClassifier",)


@dataclass(frozen=True)
class Case:
    cls: type
    task: str  # "binary", "regressor" or "multiclass"

    def __str__(self) -> str:
        return f"{self.cls.__name__}-{self.task}"


def engine_cases(registry: dict | None = None) -> list[Case]:
    """One case per registered assembler function (one SQL shape per family) and task, using
    the first type registered for it, plus ALSO. Families are picked up as they register."""
    registry = ESTIMATORS if registry is None else registry
    picked: dict[object, type] = {}
    for cls, fn in registry.items():
        picked.setdefault(fn, cls)
    types = list(picked.values()) + [c for c in registry if c.__name__ in ALSO]
    cases = []
    for cls in types:
        if is_classifier(cls()):
            cases += [Case(cls, "binary"), Case(cls, "multiclass")]
        elif is_regressor(cls()):
            cases.append(Case(cls, "regressor"))
    return cases


def make(cls: type):
    params = cls().get_params()
    kw = {k: v for k, v in SMALL.items() if k in params}
    return cls(**{**kw, **OVERRIDES.get(cls.__name__, {})})


@pytest.fixture(scope="module")
def data():
    df, y_reg, y_bin = _dataset()
    cut = N_ROWS - N_HOLDOUT
    codes = np.digitize(y_reg, np.quantile(y_reg, [1 / 3, 2 / 3]))[:cut]
    return {
        "train": df.iloc[:cut].reset_index(drop=True),
        "holdout": df.iloc[cut:].reset_index(drop=True),
        "regressor": y_reg[:cut],
        "binary": y_bin[:cut],
        "multiclass": CLASS_LABELS[codes],
        "multiclass-codes": codes,
    }


def fit(case: Case, data) -> Pipeline:
    est = make(case.cls)
    # Estimators that accept NaN also read x4 raw, NaN included (NULL routing in the SQL).
    raw = get_tags(est).input_tags.allow_nan
    target = case.task
    if target == "multiclass" and case.cls.__name__ in CODE_LABELS:
        target = "multiclass-codes"
    return Pipeline([("prep", _preprocess(raw)), ("model", est)]).fit(data["train"], data[target])


def tolerance_for(case: Case) -> float:
    # XGBoost classifiers: glibc's expf is not always correctly rounded, so a probability moves
    # by a float32 ulp or two on ~0.06% of rows on every engine (decision 0011); that family's
    # own tests use float32 precision. Everything else: the gate's 1e-9.
    if case.cls.__name__ == "XGBClassifier":
        return XGB_FLOAT32_TOLERANCE
    return PARITY_TOLERANCE


def _parity_or_skip(case: Case, engine, data) -> ParityReport:
    model = fit(case, data)
    try:
        report = check_parity(model, engine, data["holdout"], tolerance=tolerance_for(case))
    except UnsupportedError as e:
        if case.task == "multiclass":
            # The compiler refusing a family's multiclass form is its documented answer.
            pytest.skip(f"{case.cls.__name__} refuses multiclass: {e}")
        raise
    assert PARITY_TOLERANCE == TOLERANCE
    assert report.passed, report.worst_row
    assert report.rows_checked > len(data["holdout"]), report
    # Shown with `pytest -s`: the figures a reviewer asks for.
    print(
        f"{engine.dialect} parity {case}: rows={report.rows_checked} "
        f"max|diff|={report.max_abs_diff:.3g}"
    )
    return report


CASES = engine_cases()


def test_case_list_covers_the_named_families() -> None:
    names = {str(c) for c in CASES}
    for required in (
        "LogisticRegression-binary",
        "LogisticRegression-multiclass",
        "RandomForestClassifier-binary",
        "RandomForestClassifier-multiclass",
        "ExtraTreesClassifier-binary",
        "DecisionTreeRegressor-regressor",
        "LGBMClassifier-binary",
        "LGBMRegressor-regressor",
    ):
        assert required in names
    # One representative per assembler function: every registered type is covered by its family.
    assert {ESTIMATORS[c.cls] for c in CASES} == set(ESTIMATORS.values())


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_postgres_parity(case: Case, data, pg_engine) -> None:
    _parity_or_skip(case, pg_engine, data)


def _scalar_on(engine, expr: ast.Expr, x: float) -> pa.Table:
    assembled = Assembled(inputs=("x",), score=expr, task="regressor")
    sql = SqlEmitter(engine.dialect).render(assembled, "t_scalar", "k")
    engine.load("t_scalar", pa.table({"k": [0], "x": [x]}))
    try:
        return engine.fetch_arrow(sql)
    finally:
        engine.drop("t_scalar")


def _b(left: ast.Expr, op: ast.BinNumOpType, right: ast.Expr) -> ast.Expr:
    return ast.BinNumExpr(left, right, op)


ADD, MUL, DIV, SUB = (
    ast.BinNumOpType.ADD,
    ast.BinNumOpType.MUL,
    ast.BinNumOpType.DIV,
    ast.BinNumOpType.SUB,
)
X = ast.ColumnRef("x", "double")
CMP_LE = ast.CompOpType.LTE

# (id, expression over x, x, the float64 result Python computes)
LITERAL_CASES = [
    # Decimal arithmetic would give exactly 0.3 / 1.0: float64 gives neither.
    ("literal-sum", _b(ast.num(0.1), ADD, ast.num(0.2)), 0.0, 0.1 + 0.2),
    (
        "literal-sum-chain",
        _b(_b(ast.num(0.1), ADD, ast.num(0.2)), SUB, ast.num(0.3)),
        0.0,
        0.1 + 0.2 - 0.3,
    ),
    ("literal-product", _b(ast.num(0.1), MUL, ast.num(3.0)), 0.0, 0.1 * 3.0),
    ("literal-division", _b(ast.num(1.0), DIV, ast.num(3.0)), 0.0, 1.0 / 3.0),
    ("column-plus-literals", _b(_b(X, ADD, ast.num(0.1)), ADD, ast.num(0.2)), 0.7, 0.7 + 0.1 + 0.2),
    ("column-times-literal", _b(X, MUL, ast.num(1.1)), 3.3, 3.3 * 1.1),
    (
        "case-of-literals",
        ast.IfExpr(
            ast.CompExpr(X, ast.num(0.5), CMP_LE), ast.num(0.1), _b(ast.num(0.1), ADD, ast.num(0.2))
        ),
        1.0,
        0.1 + 0.2,
    ),
    ("exp-of-literal", ast.ExpExpr(ast.num(-700.0)), 0.0, math.exp(-700.0)),
    ("greatest", ast.MaxExpr([_b(X, ADD, ast.num(0.2)), ast.num(0.1)]), 0.1, 0.1 + 0.2),
    ("sigmoid-saturates-high", ast.SigmoidExpr(_b(X, MUL, ast.num(1e6))), 1e3, 1.0),
    ("sigmoid-saturates-low", ast.SigmoidExpr(_b(X, MUL, ast.num(1e6))), -1e3, 0.0),
    ("subnormal-input-times-small-weight", _b(X, MUL, ast.num(1e-5)), 1e-320, 0.0),
    ("nan-input-is-missing", ast.CoalesceExpr(X, ast.num(-1.0)), math.nan, -1.0),
    ("infinity-literal", _b(X, ADD, ast.num(math.inf)), 1.0, math.inf),
]


@pytest.mark.parametrize(
    ("expr", "x", "expected"), [pytest.param(e, x, v, id=i) for i, e, x, v in LITERAL_CASES]
)
@pytest.mark.parametrize("where", ["duckdb", "postgres"])
def test_arithmetic_is_float64_with_python_rounding(where, expr, x, expected, request) -> None:
    engine = (
        DuckDBEngine(duckdb.connect())
        if where == "duckdb"
        else request.getfixturevalue("pg_engine")
    )
    got = _scalar_on(engine, expr, x)
    assert got.schema.field("score").type == pa.float64()
    # Exactly equal, not merely within the tolerance: the same IEEE operations in the same order.
    assert got.column("score").to_pylist() == [expected]


def _tiny_unit_logistic() -> tuple[Pipeline, pd.DataFrame]:
    """A feature in tiny units (std 1e-9): StandardScaler divides by ~1e-9."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(scale=1e-9, size=400)
    y = (x + rng.normal(scale=1e-9, size=400) > 0).astype(int)
    frame = pd.DataFrame({"x": x})
    steps = [("imp", SimpleImputer()), ("sc", StandardScaler()), ("lr", LogisticRegression())]
    return Pipeline(steps).fit(frame, y), frame


def _large_unit_logistic() -> tuple[Pipeline, pd.DataFrame]:
    """Revenue in currency units, imputed but not scaled: the weight is ~6e-5."""
    rng = np.random.default_rng(SEED)
    revenue = rng.exponential(50_000.0, size=1000)
    y = (revenue + rng.normal(scale=30_000.0, size=1000) > 50_000.0).astype(int)
    frame = pd.DataFrame({"revenue": revenue})
    model = Pipeline([("imp", SimpleImputer()), ("lr", LogisticRegression())]).fit(frame, y)
    return model, frame


def test_postgres_gate_survives_subnormal_probes(pg_engine) -> None:
    # The gate's +-1e-320 rows times a weight of 6e-5 round to 0.0, which PostgreSQL reports as
    # "value out of range: underflow" instead of returning 0; the emitter reads subnormal inputs
    # as 0 on PostgreSQL, so the gate runs there as on DuckDB.
    model, frame = _large_unit_logistic()
    assert abs(model[-1].coef_[0, 0]) < 1e-3
    for engine in (pg_engine, DuckDBEngine(duckdb.connect())):
        report = check_parity(model, engine, frame.iloc[:200])
        assert report.passed, report.worst_row
        assert report.rows_checked > 200


@pytest.mark.xfail(
    reason=(
        "BUG: PostgreSQL raises 'value out of range: overflow' when double arithmetic overflows "
        "(numpy and DuckDB give inf): the gate's 1e300 row divided by a StandardScaler scale of "
        "~1e-9 fails the whole query on PostgreSQL, so the gate cannot pass such a model there "
        "(the library scores the row 1.0)"
    ),
    raises=NumericValueOutOfRange,
    strict=True,
)
def test_postgres_parity_where_float64_overflows(pg_engine) -> None:
    model, frame = _tiny_unit_logistic()
    # DuckDB agrees with the library on the same rows: only PostgreSQL raises.
    assert check_parity(model, duckdb.connect(), frame.iloc[:200]).passed
    report = check_parity(model, pg_engine, frame.iloc[:200])
    assert report.passed, report.worst_row


def test_postgres_load_round_trips_every_value(pg_engine) -> None:
    hostile = [
        "",
        " ",
        "tab\there",
        "line\nbreak",
        "cr\rhere",
        "back\\slash",
        "\\N",
        "O'R; --",
        '"q"',
        "Zürich ✓",
        None,
    ]
    numbers = [
        math.nan,
        math.inf,
        -math.inf,
        -0.0,
        5e-324,
        1e-320,
        1.7976931348623157e308,
        0.1,
        None,
        1.0000000000000002,
        -1e-300,
    ]
    n = max(len(hostile), len(numbers))
    table = pa.table(
        {
            "k": list(range(n)),
            "s": (hostile + [None] * n)[:n],
            "x": (numbers + [None] * n)[:n],
        }
    )
    pg_engine.load("t_round_trip", table)
    try:
        got = pg_engine.fetch_arrow('SELECT k, s, x FROM "t_round_trip" ORDER BY k')
    finally:
        pg_engine.drop("t_round_trip")
    assert got.column("s").to_pylist() == table.column("s").to_pylist()
    xs, want = got.column("x").to_pylist(), table.column("x").to_pylist()
    for g, w in zip(xs, want, strict=True):
        if w is None or math.isnan(w):
            assert (g is None) == (w is None) and (g is None or math.isnan(g))
        else:
            assert g == w and math.copysign(1.0, g) == math.copysign(1.0, w)


def test_postgres_refuses_a_numeric_result(pg_engine) -> None:
    with pytest.raises(UnsupportedError, match="NUMERIC"):
        pg_engine.fetch_arrow("SELECT 1.5E0 AS score")


# -- the engine interface, without a server --------------------------------------------------


def test_duckdb_connection_and_engine_give_the_same_report(data) -> None:
    model = fit(Case(LogisticRegression, "binary"), data)
    a = check_parity(model, duckdb.connect(), data["holdout"])
    b = check_parity(model, DuckDBEngine(duckdb.connect()), data["holdout"])
    assert a == b and a.passed


def test_engine_for_refuses_unknown_connections() -> None:
    with pytest.raises(UnsupportedError, match="DuckDB connection or an engine"):
        engine_for(object())


# -- Spark (slow: deselected by default, run with `-m spark`) --------------------------------


@pytest.mark.spark
@pytest.mark.parametrize("case", CASES, ids=str)
def test_spark_parity(case: Case, data, spark_session) -> None:
    from mlsm_py.warehouse.engines import SparkEngine

    _parity_or_skip(case, SparkEngine(spark_session), data)


@pytest.mark.spark
@pytest.mark.parametrize(
    ("expr", "x", "expected"), [pytest.param(e, x, v, id=i) for i, e, x, v in LITERAL_CASES]
)
def test_spark_arithmetic_is_float64_with_python_rounding(expr, x, expected, spark_session) -> None:
    from mlsm_py.warehouse.engines import SparkEngine

    got = _scalar_on(SparkEngine(spark_session), expr, x)
    assert got.schema.field("score").type == pa.float64()
    assert got.column("score").to_pylist() == [expected]

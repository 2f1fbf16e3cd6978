"""XGBoost 3 compiled to SQL, run in DuckDB and compared with XGBoost's own predict_proba /
predict on holdout rows plus the parity gate's adversarial rows (NULL, NaN, +-inf, 1e300,
float32 and float64 neighbours of every split threshold, unseen and hostile category levels).

XGBoost works in float32: inputs are cast to float32, every leaf is added to the margin in
float32, and the link (sigmoid, softmax, exp) is float32. The compiled SQL repeats each rounding
with a cast to float32 or float32 arithmetic (ast.Float32Expr; see
mlsm_py/compile/assemblers/xgboost.py), so margins and identity-link predictions are
bit-identical; probabilities differ only where glibc's expf (or numpy's float32 exp) is not
correctly rounded, and the parity gate checks them at the float32 tolerance the assembler
declares. The float32 primitives run on PostgreSQL too when MLSM_PG_DSN is set.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from xgboost import XGBClassifier, XGBRegressor

from mlsm_py import to_sql
from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.assemblers import xgboost as xgb_asm
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.errors import UnsupportedError
from mlsm_py.frames import arrow_rows, python_rows
from mlsm_py.parity.gate import (
    ROW_KEY,
    TOLERANCE,
    ParityReport,
    adversarial_rows,
    check_parity,
    input_types,
)
from mlsm_py.warehouse.engines import DuckDBEngine, SparkEngine
from tests.helpers import assert_evaluator

# Margins and identity-link regressors: the SQL repeats every float32 rounding XGBoost makes
# (input cast, each leaf addition), so the results are the same float32 values, bit for bit.
EXACT = 0.0
# Probabilities (sigmoid, softmax, exp link): glibc's expf is not always correctly rounded (about
# 1 argument in 1,600 on this machine), and the SQL's exp() rounded to float32 is; scipy's
# softmax (multi:softmax) uses numpy's vectorised float32 exp, a few ulps off more often. Either
# moves a probability by a few float32 ulps (5.96e-8 each in [0.5, 1)): measured at most
# 1.2e-7 here. 1e-6 is float32 precision for a score in [0, 1]; a misrouted node or a lost
# base_score moves a probability by orders of magnitude more. The float32 summation itself is
# pinned separately: margins must agree EXACTly, and almost every probability bit for bit.
FLOAT32_TOLERANCE = 1e-6
# Share of holdout probabilities that must be bit-identical (glibc's expf errs on ~0.06%).
MIN_BIT_IDENTICAL = 0.99

SEED = 0
N_ROWS = 2500
N_HOLDOUT = 500
NUMERIC = ["x1", "x2", "x3", "x4"]
CHANNELS = ["web", "email", "ads", "referral", "event"]
# Small fits keep the suite fast; test_long_models_stay_exact covers chains past
# ROUNDS_PER_COLUMN.
XGB_KW = {
    "n_estimators": 20,
    "max_depth": 4,
    "learning_rate": 0.3,
    "random_state": SEED,
    "n_jobs": 1,
}
MULTI_KW = {**XGB_KW, "n_estimators": 10}

pytestmark = [
    # The gate's 1e300 rows overflow float32 inside XGBoost's input cast: that is the point.
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
]


# -- data ------------------------------------------------------------------------------------


def _dataset(seed: int = SEED) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Leads with a non-linear signal, NaN in three numeric columns and in the category."""
    rng = np.random.default_rng(seed)
    n = N_ROWS
    x1 = rng.normal(size=n)
    x2 = rng.uniform(-3, 3, size=n)
    x3 = rng.poisson(1.5, size=n).astype("float64")
    x4 = rng.exponential(2.0, size=n)
    channel = rng.choice(CHANNELS, size=n, p=[0.35, 0.25, 0.2, 0.15, 0.05]).astype(object)
    effect = pd.Series(channel).map(
        {"web": 0.0, "email": 0.8, "ads": -0.6, "referral": 1.5, "event": -1.2}
    )
    signal = (
        np.sin(2.0 * x1)
        + 0.4 * x2**2
        - 1.0
        + effect.to_numpy()
        + 0.5 * x3 * (x1 > 0)
        - 0.3 * np.log1p(x4)
    )
    noisy = signal + rng.normal(scale=0.3, size=n)
    targets = {
        "binary": (signal + rng.logistic(scale=0.5, size=n) > np.median(signal)).astype(int),
        "multi": np.digitize(noisy, np.quantile(noisy, [0.35, 0.7])),
        # Scaled so predictions reach ~+-10, where one float32 ulp is ~1e-6: a sum kept in
        # double instead of float32 misses EXACT here by several ulps.
        "regression": 3.0 * noisy,
        "counts": rng.poisson(np.exp(0.4 * signal)).astype("float64"),
    }
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "x4": x4, "channel": channel})
    df.loc[rng.uniform(size=n) < 0.10, "x1"] = np.nan
    df.loc[rng.uniform(size=n) < 0.06, "x2"] = np.nan
    df.loc[rng.uniform(size=n) < 0.08, "x4"] = np.nan
    df.loc[rng.uniform(size=n) < 0.07, "channel"] = np.nan
    return df, targets


@pytest.fixture(scope="module")
def data():
    df, targets = _dataset()
    cut = N_ROWS - N_HOLDOUT
    return {
        "train": df.iloc[:cut].reset_index(drop=True),
        "holdout": df.iloc[cut:].reset_index(drop=True),
        **{k: v[:cut] for k, v in targets.items()},
    }


def _con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _pipeline(model) -> Pipeline:
    """Categories one-hot encoded; numeric columns reach XGBoost raw, NaN included."""
    categorical = Pipeline(
        [
            ("imp", SimpleImputer(strategy="constant", fill_value="missing")),
            ("ohe", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    prep = ColumnTransformer([("cat", categorical, ["channel"]), ("num", "passthrough", NUMERIC)])
    return Pipeline([("prep", prep), ("model", model)])


def _assert_parity(report: ParityReport, tolerance: float) -> None:
    assert report.max_abs_diff <= tolerance, report.worst_row
    # XGBoost scores every adversarial row (+-inf and 1e300 included): none is skipped.
    assert report.rows_refused_by_estimator == 0, report
    assert report.rows_checked > N_HOLDOUT, report


def _library_scores(model, frame: pd.DataFrame) -> np.ndarray:
    """(rows, outputs) as the library gives them: the positive-class probability, every class's
    probability, or the prediction."""
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(frame)
        return proba[:, 1:] if proba.shape[1] == 2 else proba
    return np.asarray(model.predict(frame)).reshape(len(frame), 1)


def _sql_scores(model, frame: pd.DataFrame) -> np.ndarray:
    """The same outputs from the public to_sql text, run on a DuckDB table with a key."""
    con = _con()
    con.register("src", frame.assign(lead_id=np.arange(len(frame))))
    con.execute("CREATE TABLE leads AS SELECT * FROM src")
    result = con.execute(to_sql(model, "leads", key="lead_id") + " ORDER BY lead_id").df()
    cols = [c for c in result.columns if c == "score" or c.startswith("score_")]
    return result[cols].to_numpy(dtype="float64")


def _bit_identical_share(model, frame: pd.DataFrame) -> float:
    expected = _library_scores(model, frame).astype("float64")
    got = _sql_scores(model, frame)
    assert got.shape == expected.shape
    return float(np.mean(np.all(got == expected, axis=1)))


# -- float32 arithmetic, run in the engines ---------------------------------------------------


@pytest.fixture(params=["duckdb", "postgres", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request):
    """DuckDB; PostgreSQL when MLSM_PG_DSN is set (it raises where a float32 cast or REAL
    operation overflows or rounds a non-zero value to 0, so it checks the range guards); Spark
    with -m spark (it divides FLOATs in DOUBLE)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_engine")
    if request.param == "spark":
        return SparkEngine(request.getfixturevalue("spark_session"))
    return DuckDBEngine(_con())


def _evaluate(engine, score: ast.Expr, columns: dict[str, np.ndarray]) -> np.ndarray:
    """`score` over input columns of doubles, in row order, computed by the engine."""
    names = tuple(columns)
    n = len(columns[names[0]])
    rows = [{**{k: float(columns[k][i]) for k in names}, ROW_KEY: i} for i in range(n)]
    sql = SqlEmitter(engine.dialect).render(Assembled(names, score, "regressor"), "f32", ROW_KEY)
    engine.load("f32", arrow_rows(rows, dict.fromkeys(names, "double"), ROW_KEY))
    try:
        table = engine.fetch_arrow(sql)
    finally:
        engine.drop("f32")
    order = np.argsort(table.column(ROW_KEY).to_numpy())
    return np.asarray(table.column("score").to_pylist(), dtype="float64")[order]


def _x(name: str = "x") -> ast.Expr:
    return ast.ColumnRef(name, "double")


def _float32_cases(rng: np.random.Generator, n: int) -> np.ndarray:
    """Doubles whose float32 rounding is hard: ties, binade edges, subnormals."""
    # Normal doubles over float32's whole normal range.
    normal = rng.normal(size=n) * 10.0 ** rng.integers(-37, 38, size=n)
    normal = normal[(np.abs(normal) > 1.2e-38) & (np.abs(normal) < 3.4e38)]
    # Exact ties between float32 neighbours, with even and odd lower neighbours.
    f = (rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, size=n)).astype(np.float32)
    up = np.nextafter(f, np.float32(np.inf))
    ties = (f.astype("float64") + up.astype("float64")) / 2.0
    # Just below powers of two, where rounding carries into the next binade.
    p2 = 2.0 ** rng.integers(-100, 100, size=n).astype("float64")
    near = p2 * (1.0 - rng.uniform(0, 2.0**-20, size=n))
    # float32's subnormal range (fewer significant bits), above the 2^-150 that rounds to 0.
    sub = rng.uniform(2.0**-149, 2.0**-126, size=n) * rng.choice([-1.0, 1.0], size=n)
    edges = [0.0, -0.0, 1.0, -1.0, 2.0**-149, 2.0**-150 * 1.5, float(np.finfo(np.float32).max)]
    return np.concatenate([normal, ties, near, sub, edges])


@pytest.mark.parametrize(
    ("dialect", "text"),
    [
        ("duckdb", 'CAST(CAST("x" AS REAL) AS DOUBLE)'),
        ("postgres", 'CAST(CAST("x" AS REAL) AS DOUBLE PRECISION)'),
        ("spark", "CAST(CAST(`x` AS FLOAT) AS DOUBLE)"),
    ],
)
def test_float32_node_is_a_cast_through_the_4_byte_float(dialect: str, text: str) -> None:
    assembled = Assembled(("x",), xgb_asm.float32_round(_x()), "regressor")
    assert text in SqlEmitter(dialect).render(assembled, "t", None)


def test_a_long_float32_chain_renders_without_deep_recursion() -> None:
    # 1,500 rounds in one expression (past Python's default recursion limit of 1,000): the
    # emitter walks the chain in a loop and writes one flat REAL sum, cast to DOUBLE once.
    total = xgb_asm.float32_round(ast.num(0.5))
    for _ in range(1_500):
        total = xgb_asm._f32_op(total, xgb_asm.float32_round(_x()), ast.BinNumOpType.ADD)
    sql = SqlEmitter("duckdb").render(Assembled(("x",), total, "regressor"), "t", None)
    score = sql.split("FROM t")[-1]
    assert score.count('CAST("x" AS REAL)') == 1_500
    assert score.count("AS DOUBLE)") == 1


def test_float32_round_in_the_engine_is_the_cast_to_float32(engine) -> None:
    rng = np.random.default_rng(SEED)
    values = _float32_cases(rng, 20_000 if engine.dialect == "duckdb" else 4_000)
    expected = values.astype(np.float32).astype("float64")
    got = _evaluate(engine, xgb_asm.float32_round(_x()), {"x": values})
    wrong = np.flatnonzero(got != expected)
    assert len(wrong) == 0, (values[wrong[:5]], got[wrong[:5]], expected[wrong[:5]])
    # Not vacuous: ties go to the even neighbour, which is the upper one about half the time.
    assert 0.3 < np.mean(np.abs(expected) > np.abs(values)) < 0.7


@pytest.mark.parametrize(
    ("op", "numpy_op"),
    [
        (ast.BinNumOpType.ADD, np.add),
        (ast.BinNumOpType.SUB, np.subtract),
        (ast.BinNumOpType.DIV, np.divide),
    ],
)
def test_float32_operations_in_the_engine(engine, op, numpy_op) -> None:
    # Float32 operands, a three-step chain the way margins accumulate: + and - run in REAL
    # arithmetic (no round trip through DOUBLE), / through the cast (Spark divides FLOATs in
    # DOUBLE).
    rng = np.random.default_rng(SEED)
    n = 20_000 if engine.dialect == "duckdb" else 4_000
    a, b, c = (
        (rng.normal(size=n) * 10.0 ** rng.integers(-3, 4, size=n)).astype(np.float32)
        for _ in range(3)
    )
    if op == ast.BinNumOpType.DIV:
        b, c = np.abs(b) + np.float32(1), np.abs(c) + np.float32(1)
    f32 = xgb_asm.float32_round
    step = xgb_asm._f32_op(f32(_x("a")), ast.IdExpr(f32(_x("b")), True), op)
    chain = xgb_asm._f32_op(step, f32(_x("c")), op)
    cols = {k: v.astype("float64") for k, v in {"a": a, "b": b, "c": c}.items()}
    got = _evaluate(engine, chain, cols)
    expected = numpy_op(numpy_op(a, b), c).astype("float64")
    assert np.array_equal(got, expected)
    # Not vacuous: the same chain in double differs.
    assert not np.array_equal(numpy_op(numpy_op(cols["a"], cols["b"]), cols["c"]), expected)


def test_float32_of_a_double_operand_rounds_once(engine) -> None:
    # Only float32 operands go through REAL arithmetic: a double operand (not a float32 value)
    # must not be rounded before the addition, or round(a + x) becomes round(a + round(x)).
    rng = np.random.default_rng(SEED)
    a = rng.normal(size=2_000).astype(np.float32).astype("float64")
    x = rng.normal(size=2_000) * 1e-3
    score = xgb_asm._f32_op(xgb_asm.float32_round(_x("a")), _x("x"), ast.BinNumOpType.ADD)
    got = _evaluate(engine, score, {"a": a, "x": x})
    assert np.array_equal(got, (a + x).astype(np.float32).astype("float64"))
    assert not np.array_equal(got, (a + x.astype(np.float32)).astype(np.float32))


def test_float32_quotients_that_round_to_zero(engine) -> None:
    # A probability e / total whose float32 is 0 (PostgreSQL refuses that cast) or subnormal.
    tiny = 2.0**-149
    es = [0.0, tiny, 2 * tiny, 3 * tiny, 5 * tiny, 1e-40, 1e-38, 0.25, 1.0]
    totals = [1.0, 1.5, 2.0, 3.0, 1e6]
    e, t = (grid.ravel() for grid in np.meshgrid(np.array(es), np.array(totals)))
    score = xgb_asm._f32_quotient(_x("e"), _x("t"))
    got = _evaluate(engine, score, {"e": e, "t": t})
    expected = (e.astype(np.float32) / t.astype(np.float32)).astype("float64")
    assert np.array_equal(got, expected)
    assert (expected == 0).sum() > 5 and ((expected > 0) & (expected < 1e-38)).sum() > 3


def _margins_at_the_edges() -> np.ndarray:
    """float32 margins at expf's edges (overflow to inf, underflow to 0 and subnormals), far
    beyond them, and ordinary ones."""
    edges = [xgb_asm.EXPF_MIN_NONZERO, xgb_asm.EXPF_MAX_FINITE, xgb_asm.EXPF_OVERFLOW, 0.0]
    values: list[float] = [1e30, 1e5, 200.0, 104.0, 103.0, 90.0, 87.5, 20.0, 1.0, 1e-30]
    for v in edges:
        f = np.float32(v)
        for k in range(-2, 3):
            g = f
            for _ in range(abs(k)):
                g = np.nextafter(g, np.float32(np.inf if k > 0 else -np.inf))
            values.append(float(g))
    rng = np.random.default_rng(SEED)
    values += list(rng.uniform(-110, 95, size=400))
    out = np.array(values + [-v for v in values], dtype=np.float32)
    return out.astype("float64")


def test_expf_links_at_the_float32_edges(engine) -> None:
    # The reference is a correctly rounded float32 exp: glibc's expf agrees at every edge here
    # (and on all but ~1 in 1,600 other arguments, which the random margins may hit).
    m = _margins_at_the_edges()
    with np.errstate(over="ignore"):
        expf = np.exp(m).astype(np.float32)
        expf_neg = np.exp(-m).astype(np.float32)
    sigmoid = (np.float32(1) / (np.float32(1) + expf_neg)).astype("float64")
    got_exp = _evaluate(engine, xgb_asm.exp32(_x("m")), {"m": m})
    got_sigmoid = _evaluate(engine, xgb_asm.sigmoid32(_x("m")), {"m": m})
    ulp = np.spacing(expf.astype(np.float32)).astype("float64")
    with np.errstate(invalid="ignore"):  # inf - inf where both overflow
        exp_off = np.abs(got_exp - expf.astype("float64"))
    assert np.all((got_exp == expf.astype("float64")) | (exp_off <= ulp)), m[exp_off > ulp]
    assert np.mean(got_exp == expf.astype("float64")) > 0.99
    assert np.isinf(got_exp[m >= xgb_asm.EXPF_OVERFLOW]).all()
    assert (got_exp[m < xgb_asm.EXPF_MIN_NONZERO] == 0).all()
    assert (got_exp[(m >= xgb_asm.EXPF_MIN_NONZERO) & (m < -87)] > 0).all()
    assert np.max(np.abs(got_sigmoid - sigmoid)) <= FLOAT32_TOLERANCE
    assert np.mean(got_sigmoid == sigmoid) > 0.99
    assert set(got_sigmoid[np.abs(m) > 1e4]) == {0.0, 1.0}


def _f64_around(x: float, k: int) -> list[float]:
    out, lo, hi = [x], x, x
    for _ in range(k):
        lo, hi = float(np.nextafter(lo, -np.inf)), float(np.nextafter(hi, np.inf))
        out += [lo, hi]
    return [v for v in out if math.isfinite(v)]


def test_float32_less_than_is_exact_around_every_threshold() -> None:
    rng = np.random.default_rng(SEED)
    f32max = float(np.finfo(np.float32).max)
    # XGBoost's thresholds are float32 values: random ones, zeros, subnormals, powers of two
    # and both ends of the range.
    edges = [0.0, -0.0, 1e-45, -1e-45, 1e-40, 1.0, 0.5, -2.0, 3.0e38, f32max, -f32max]
    thresholds = [float(t) for t in rng.normal(size=300).astype(np.float32)]
    thresholds += [float(np.float32(t)) for t in edges]
    checked = 0
    for t in thresholds:
        boundary, inclusive = xgb_asm.float32_less_than(t)
        t32 = np.float32(t)
        xs: set[float] = set(_f64_around(t, 3)) | set(_f64_around(boundary, 3))
        with np.errstate(over="ignore"):
            below = np.nextafter(t32, np.float32(-np.inf))
        if np.isfinite(below):
            xs |= set(_f64_around(float(below), 2))
        xs |= {2.0**128, -(2.0**128), 1e300, -1e300, math.inf, -math.inf}
        for x in xs:
            with np.errstate(over="ignore"):
                expected = bool(np.float32(x) < t32)
            got = x <= boundary if inclusive else x < boundary
            assert got == expected, (t, boundary, inclusive, x)
            checked += 1
    assert checked > 5_000


# -- margins: bit-identical ------------------------------------------------------------------


def _margin_outputs(model, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(SQL margins, XGBoost's predict(output_margin=True)) on the same rows."""
    base = assemble(model)
    inputs = [ast.ColumnRef(n) for n in base.inputs]
    margins = xgb_asm.margins(model, inputs)
    labels = tuple(range(len(margins)))
    assembled = Assembled(base.inputs, None, "multiclass", labels, tuple(margins))
    types = input_types(assembled)
    for i, r in enumerate(rows):
        r[ROW_KEY] = i
    con = _con()
    con.register("margin_rows", arrow_rows(rows, types, ROW_KEY))
    sql = SqlEmitter("duckdb").render(assembled, "margin_rows", ROW_KEY)
    got = con.execute(sql + f' ORDER BY "{ROW_KEY}"').df()
    got = got[[f"score_{c}" for c in labels]].to_numpy(dtype="float64")
    frame = python_rows(rows, types)
    with np.errstate(over="ignore"):
        expected = np.asarray(model.predict(frame, output_margin=True), dtype="float64")
    return got, expected.reshape(len(rows), -1)


@pytest.mark.parametrize(
    ("make", "target"),
    [
        pytest.param(lambda: XGBClassifier(**XGB_KW), "binary", id="binary"),
        pytest.param(lambda: XGBClassifier(**MULTI_KW), "multi", id="multi"),
        pytest.param(lambda: XGBRegressor(**XGB_KW), "regression", id="regression"),
    ],
)
def test_margins_are_bit_identical(data, make, target: str) -> None:
    train = data["train"][NUMERIC]
    model = make().fit(train, data[target])
    holdout = data["holdout"][NUMERIC]
    rows = [
        {k: (None if pd.isna(v) else float(v)) for k, v in r.items()}
        for r in holdout.to_dict("records")
    ]
    assembled = assemble(model)
    rows += adversarial_rows(assembled, rows[:5])
    got, expected = _margin_outputs(model, rows)
    assert got.shape == expected.shape
    diff = np.abs(got - expected)
    assert np.nanmax(np.where(got == expected, 0.0, diff)) <= EXACT
    assert not np.isnan(got).any()


def test_long_models_stay_exact(data, monkeypatch) -> None:
    # More rounds than ROUNDS_PER_COLUMN (made small so the fit stays quick): the running sum is
    # cut into columns, results stay bit-identical, and the SQL stays a handful of CTE stages
    # (the float32 sum is flat, not one stage per round).
    monkeypatch.setattr(xgb_asm, "ROUNDS_PER_COLUMN", 20)
    rounds = 2 * 20 + 7
    kw = {**XGB_KW, "n_estimators": rounds, "max_depth": 2, "learning_rate": 0.1}
    model = XGBRegressor(**kw).fit(data["train"][NUMERIC], data["regression"])
    assert model.get_booster().num_boosted_rounds() == rounds
    holdout = data["holdout"][NUMERIC]
    report = check_parity(model, _con(), holdout, tolerance=EXACT)
    _assert_parity(report, EXACT)
    sql = to_sql(model, "leads")
    assert sql.count(" AS (") <= 5, sql.count(" AS (")  # inputs, trees, 3 pieces of the sum
    # Each piece of the sum is one line: the previous piece (or the base) and its rounds.
    pieces = [line.count(" AS REAL)") for line in sql.splitlines() if " AS REAL) + " in line]
    assert pieces == [21, 21, 8], pieces


def test_margins_that_could_overflow_float32_are_refused(data) -> None:
    model = XGBRegressor(**XGB_KW).fit(data["train"][NUMERIC], data["regression"])
    inputs = [ast.ColumnRef(n) for n in NUMERIC]
    doctored = xgb_asm._model_json(model)
    for tree in doctored["learner"]["gradient_booster"]["model"]["trees"]:
        tree["split_conditions"] = [
            c * 1e37 if child == -1 else c
            for c, child in zip(tree["split_conditions"], tree["left_children"], strict=True)
        ]
    xgb_asm.margins(model, inputs)  # the fitted model itself is fine
    with pytest.raises(UnsupportedError, match="overflow"):
        xgb_asm.margins(model, inputs, doctored)


# -- the gate's tolerance ----------------------------------------------------------------------


def test_gate_checks_xgboost_probabilities_at_float32_precision(data) -> None:
    # multi:softmax's predict_proba uses numpy's float32 exp, off by an ulp on many rows: the
    # float64 tolerance would refuse it, the declared float32 one accepts it.
    model = XGBClassifier(objective="multi:softmax", **MULTI_KW)
    model.fit(data["train"][NUMERIC], data["multi"])
    assert assemble(model).tolerance == FLOAT32_TOLERANCE
    report = check_parity(model, _con(), data["holdout"][NUMERIC])
    assert report.tolerance == FLOAT32_TOLERANCE
    assert report.passed, report.worst_row
    assert_evaluator(report)
    assert report.max_abs_diff > TOLERANCE  # not vacuous
    # An explicit tolerance still wins.
    strict = check_parity(model, _con(), data["holdout"][NUMERIC], tolerance=TOLERANCE)
    assert not strict.passed


def test_gate_keeps_the_float64_tolerance_elsewhere(data) -> None:
    from sklearn.tree import DecisionTreeClassifier

    train = data["train"][NUMERIC].fillna(0.0)
    tree = DecisionTreeClassifier(max_depth=4, random_state=SEED).fit(train, data["binary"])
    assert assemble(tree).tolerance is None
    assert check_parity(tree, _con(), data["holdout"][NUMERIC].fillna(0.0)).tolerance == TOLERANCE
    # XGBoost's margins are exact: an identity-link regressor declares nothing either.
    reg = XGBRegressor(**XGB_KW).fit(data["train"][NUMERIC], data["regression"])
    assert assemble(reg).tolerance is None


# -- parity: one-hot categories in a pipeline, NaN in numeric columns -------------------------

PIPELINE_CASES = [
    ("binary", "binary", lambda: XGBClassifier(**XGB_KW), FLOAT32_TOLERANCE),
    ("multi-softprob", "multi", lambda: XGBClassifier(**MULTI_KW), FLOAT32_TOLERANCE),
    ("regression", "regression", lambda: XGBRegressor(**XGB_KW), EXACT),
]


@pytest.mark.parametrize(
    ("target", "make", "tolerance"),
    [pytest.param(t, m, tol, id=i) for i, t, m, tol in PIPELINE_CASES],
)
def test_pipeline_parity(data, target: str, make, tolerance: float) -> None:
    model = _pipeline(make()).fit(data["train"], data[target])
    holdout = data["holdout"]
    assert holdout[["x1", "x2", "x4", "channel"]].isna().any().all()
    report = check_parity(model, _con(), holdout, tolerance=tolerance)
    _assert_parity(report, tolerance)
    assert _bit_identical_share(model, holdout) >= MIN_BIT_IDENTICAL


# -- parity: bare XGBoost on numeric columns with NaN ----------------------------------------

# Doubles at float32's overflow edge: FLT_MAX, the largest double that still rounds to it, and
# the smallest that rounds to inf. XGBoost casts each to float32 before comparing.
F32_MAX = float(np.finfo(np.float32).max)
OVERFLOW_EDGE = 2.0**128 - 2.0**103
EDGE_VALUES = [F32_MAX, float(np.nextafter(OVERFLOW_EDGE, 0.0)), OVERFLOW_EDGE, -OVERFLOW_EDGE]

BARE_CASES = [
    ("binary", "binary", lambda: XGBClassifier(**XGB_KW), FLOAT32_TOLERANCE),
    ("multi-softprob", "multi", lambda: XGBClassifier(**MULTI_KW), FLOAT32_TOLERANCE),
    (
        "multi-softmax",
        "multi",
        lambda: XGBClassifier(objective="multi:softmax", **MULTI_KW),
        FLOAT32_TOLERANCE,
    ),
    ("squarederror", "regression", lambda: XGBRegressor(**XGB_KW), EXACT),
    (
        "absoluteerror",
        "regression",
        lambda: XGBRegressor(objective="reg:absoluteerror", **XGB_KW),
        EXACT,
    ),
    (
        "reg-logistic",
        "binary",
        lambda: XGBRegressor(objective="reg:logistic", **XGB_KW),
        FLOAT32_TOLERANCE,
    ),
    (
        "poisson",
        "counts",
        lambda: XGBRegressor(objective="count:poisson", **XGB_KW),
        FLOAT32_TOLERANCE,
    ),
]


def _edge_rows(holdout: pd.DataFrame) -> list[dict]:
    first = {k: (None if pd.isna(v) else float(v)) for k, v in holdout.iloc[0].items()}
    return [{**first, c: s * v} for c in NUMERIC for v in EDGE_VALUES for s in (1.0, -1.0)]


@pytest.mark.parametrize(
    ("target", "make", "tolerance"),
    [pytest.param(t, m, tol, id=i) for i, t, m, tol in BARE_CASES],
)
def test_numeric_with_nan_parity(data, target: str, make, tolerance: float) -> None:
    train = data["train"][NUMERIC]
    assert train.isna().any().sum() == 3
    model = make().fit(train, data[target])
    holdout = data["holdout"][NUMERIC]
    # NaN was seen at fit time: XGBoost learned a default direction per node, both occur.
    directions = set()
    for tree in xgb_asm._model_json(model)["learner"]["gradient_booster"]["model"]["trees"]:
        split = [i for i, c in enumerate(tree["left_children"]) if c != -1]
        directions |= {tree["default_left"][i] for i in split}
    assert directions == {0, 1}
    report = check_parity(
        model, _con(), holdout, tolerance=tolerance, extra_rows=_edge_rows(holdout)
    )
    _assert_parity(report, tolerance)
    if tolerance == EXACT or model.objective == "multi:softmax":
        # Exact already; or scipy's softmax, whose numpy float32 exp is off by an ulp often.
        return
    # The float32 sums are right: almost every probability is the same float32 value.
    share = _bit_identical_share(model, holdout)
    assert share >= MIN_BIT_IDENTICAL, share


def test_early_stopping_scores_with_the_best_iteration(data) -> None:
    # predict() uses rounds [0, best_iteration] after early stopping; so must the SQL. A
    # regressor is bit-exact, so one extra or missing round would show.
    train, y = data["train"][NUMERIC], data["regression"]
    model = XGBRegressor(**{**XGB_KW, "n_estimators": 100, "learning_rate": 0.5})
    model.set_params(early_stopping_rounds=3)
    model.fit(train[:1500], y[:1500], eval_set=[(train[1500:], y[1500:])], verbose=False)
    rounds = model.get_booster().num_boosted_rounds()
    assert model.best_iteration + 1 < rounds < 100
    holdout = data["holdout"][NUMERIC]
    report = check_parity(model, _con(), holdout, tolerance=EXACT)
    _assert_parity(report, EXACT)


# -- the compiled text -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "make"),
    [
        pytest.param("binary", lambda: XGBClassifier(**{**XGB_KW, "n_estimators": 10}), id="bin"),
        pytest.param("multi", lambda: XGBClassifier(**{**MULTI_KW, "n_estimators": 5}), id="multi"),
    ],
)
def test_identical_fits_compile_to_byte_identical_sql(data, target: str, make) -> None:
    def fit(rows: slice):
        return _pipeline(make()).fit(data["train"][rows], data[target][rows])

    first, second = to_sql(fit(slice(None)), "leads"), to_sql(fit(slice(None)), "leads")
    assert first == second
    # Not vacuous: a fit on other rows compiles to other text.
    assert to_sql(fit(slice(0, 1500)), "leads") != first


# -- refusals --------------------------------------------------------------------------------


def _numeric_fit(model, data, target: str = "binary"):
    return model.fit(data["train"][NUMERIC], data[target])


REFUSALS = [
    (
        "logitraw",
        lambda d: _numeric_fit(XGBClassifier(objective="binary:logitraw", **XGB_KW), d),
        "binary:logitraw",
    ),
    (
        "hinge",
        lambda d: _numeric_fit(XGBClassifier(objective="binary:hinge", **XGB_KW), d),
        "binary:hinge",
    ),
    (
        "cox",
        lambda d: _numeric_fit(XGBRegressor(objective="survival:cox", **XGB_KW), d),
        "survival:cox",
    ),
    ("dart", lambda d: _numeric_fit(XGBClassifier(booster="dart", **XGB_KW), d), "dart"),
    (
        "gblinear",
        lambda d: _numeric_fit(XGBRegressor(booster="gblinear", n_estimators=5), d, "regression"),
        "gblinear",
    ),
    (
        "missing-zero",
        lambda d: _numeric_fit(XGBClassifier(missing=0.0, **XGB_KW), d),
        "missing=0.0",
    ),
]


def _categorical_fit(data):
    frame = data["train"][["x1", "channel"]].assign(
        channel=data["train"]["channel"].astype("category")
    )
    return XGBClassifier(enable_categorical=True, tree_method="hist", **XGB_KW).fit(
        frame, data["binary"]
    )


@pytest.mark.parametrize(
    ("fit", "named"),
    [pytest.param(f, n, id=i) for i, f, n in REFUSALS]
    + [pytest.param(_categorical_fit, "categorical", id="categorical")],
)
def test_unsupported_xgboost_is_refused(data, fit, named: str) -> None:
    model = fit(data)
    with pytest.raises(UnsupportedError) as info:
        to_sql(model, "leads")
    msg = str(info.value)
    assert named in msg
    assert "supported" in msg


# -- the checks are not vacuous --------------------------------------------------------------


def _plain_add(a: ast.Expr, b: ast.Expr, op: ast.BinNumOpType) -> ast.Expr:
    return ast.BinNumExpr(a, b, op)


@pytest.mark.parametrize(
    ("attr", "naive"),
    [
        # Sums (and the link) kept in double instead of float32.
        pytest.param("_f32_op", _plain_add, id="double-sums"),
        # The threshold compared with the double input, without the float32 cast.
        pytest.param("float32_less_than", lambda t: (t, False), id="double-splits"),
    ],
)
def test_naive_arithmetic_fails_the_exact_check(data, monkeypatch, attr: str, naive) -> None:
    model = XGBRegressor(**XGB_KW).fit(data["train"][NUMERIC], data["regression"])
    holdout = data["holdout"][NUMERIC]
    monkeypatch.setattr(xgb_asm, attr, naive)
    report = check_parity(model, _con(), holdout, tolerance=EXACT)
    assert not report.passed

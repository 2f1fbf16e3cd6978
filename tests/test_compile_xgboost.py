"""XGBoost 3 compiled to SQL, run in DuckDB and compared with XGBoost's own predict_proba /
predict on holdout rows plus the parity gate's adversarial rows (NULL, NaN, +-inf, 1e300,
float32 and float64 neighbours of every split threshold, unseen and hostile category levels).

XGBoost works in float32: inputs are cast to float32, every leaf is added to the margin in
float32, and the link (sigmoid, softmax, exp) is float32. The compiled SQL repeats each rounding
(see mlsm_py/compile/assemblers/xgboost.py), so margins and identity-link predictions are
bit-identical; probabilities differ only where glibc's expf (or numpy's float32 exp) is not
correctly rounded.
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
from mlsm_py.compile.parity import (
    ROW_KEY,
    ParityReport,
    adversarial_rows,
    check_parity,
    input_types,
)
from mlsm_py.errors import UnsupportedError
from mlsm_py.frames import arrow_rows, python_rows

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
# Small fits: the SQL holds one column per tree and one CTE stage per boosting round (the float32
# partial sums chain), which the emitter renders slowly beyond a few dozen rounds.
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


# -- float32 arithmetic in double, run in the engine -----------------------------------------


def _run_float32_round(values: np.ndarray) -> np.ndarray:
    x = ast.ColumnRef("x", "double")
    assembled = Assembled(("x",), xgb_asm.float32_round(x), "regressor")
    sql = SqlEmitter("duckdb").render(assembled, "vals", "k")
    con = _con()
    con.register("vals", pd.DataFrame({"k": np.arange(len(values)), "x": values}))
    return con.execute(sql + " ORDER BY k").df()["score"].to_numpy()


def test_float32_round_in_the_engine_is_the_cast_to_float32() -> None:
    rng = np.random.default_rng(SEED)
    # Normal doubles over float32's whole normal range.
    normal = rng.normal(size=100_000) * 10.0 ** rng.integers(-37, 38, size=100_000)
    normal = normal[(np.abs(normal) > 1.2e-38) & (np.abs(normal) < 3.4e38)]
    # Exact ties between float32 neighbours, with even and odd lower neighbours.
    f = (rng.normal(size=50_000) * 10.0 ** rng.integers(-30, 30, size=50_000)).astype(np.float32)
    up = np.nextafter(f, np.float32(np.inf))
    ties = (f.astype("float64") + up.astype("float64")) / 2.0
    # Just below powers of two, where rounding carries into the next binade.
    p2 = 2.0 ** rng.integers(-100, 100, size=20_000).astype("float64")
    near = p2 * (1.0 - rng.uniform(0, 2.0**-20, size=20_000))
    # Sums of two float32 values (what each leaf addition is).
    a = (rng.normal(size=50_000) * 3).astype(np.float32)
    b = (rng.normal(size=50_000) * 0.1).astype(np.float32)
    sums = a.astype("float64") + b.astype("float64")
    values = np.concatenate([normal, ties, near, sums, [0.0, -0.0, 1.0, -1.0]])
    expected = values.astype(np.float32).astype("float64")
    got = _run_float32_round(values)
    wrong = np.flatnonzero(got != expected)
    assert len(wrong) == 0, (values[wrong[:5]], got[wrong[:5]], expected[wrong[:5]])
    # Not vacuous: ties go to the even neighbour, which is the upper one about half the time.
    tie_rounded = expected[len(normal) : len(normal) + len(ties)]
    assert 0.4 < np.mean(tie_rounded == up.astype("float64")) < 0.6


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

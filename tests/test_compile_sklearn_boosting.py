"""scikit-learn GradientBoosting and HistGradientBoosting compiled to SQL, run in DuckDB and
compared with the library's own predict_proba / predict: every loss, the init estimator, binary
and multiclass, native missing values and native categorical features (unseen levels included),
on holdout rows plus the gate's adversarial rows (NULL, NaN, +-inf, extremes, float32/float64
neighbours of every compared constant, unseen and hostile levels)."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from mlsm_py import to_sql
from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.assemblers.sklearn_boosting import decision_function
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.errors import UnsupportedError
from mlsm_py.parity.gate import ParityReport, adversarial_rows, check_parity
from tests.helpers import assert_evaluator

# As in tests/test_compile_parity.py: the SQL repeats the library's float64 arithmetic in the
# library's order (start value, then each stage's `learning_rate * leaf` left to right); only the
# algebraic form of the sigmoid / softmax differs by ulps. A misrouted node moves a score by a
# whole leaf value, far above 1e-9.
PARITY_TOLERANCE = 1e-9

SEED = 11
N_ROWS = 1600
N_HOLDOUT = 300
NUMERIC = ["x1", "x2", "x3", "x4"]
CHANNELS = ["web", "email", "ads", "referral", "event"]
CODES = [-1, 0, 1, 2, 3, 4, 5]  # an integer-coded category, negative code included
STR_LABELS = np.array(["bronze", "Silver Plus", "churned"])
INT_LABELS = np.array([3, 42, 7])

# Small on purpose (20 stages, depth 3): every multiclass stage is one tree per class, and the
# parity tests render and run each model's SQL; correctness does not depend on size.
GB_KW = {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.3, "random_state": SEED}
HGB_KW = {"max_iter": 20, "max_depth": 3, "learning_rate": 0.3, "random_state": SEED}

pytestmark = [
    # scikit-learn casts the gate's +-1e300 rows to float32 before refusing them.
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    # GradientBoosting inside a Pipeline is fitted on the ColumnTransformer's unnamed array.
    pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning"),
]


# -- data ------------------------------------------------------------------------------------


def _dataset() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """~1600 rows: x1 normal (10% NaN), x2 uniform (6% NaN), x3 counts with many exact zeros,
    x4 skewed (8% NaN), `code` an integer-coded category in -1..5 (7% NaN), `channel` strings
    (7% NaN). Targets: regression, positive regression, binary, 4 levels."""
    rng = np.random.default_rng(SEED)
    n = N_ROWS
    x1 = rng.normal(size=n)
    x2 = rng.uniform(-3, 3, size=n)
    x3 = rng.poisson(1.5, size=n).astype("float64")
    x4 = rng.exponential(2.0, size=n)
    code = rng.choice(CODES, size=n).astype("float64")
    channel = rng.choice(CHANNELS, size=n, p=[0.35, 0.25, 0.2, 0.15, 0.05]).astype(object)
    code_effect = np.array([0.9, 0.0, -0.7, 0.4, -0.2, 1.1, -1.0])[code.astype(int) + 1]
    channel_effect = pd.Series(channel).map(
        {"web": 0.0, "email": 0.8, "ads": -0.6, "referral": 1.5, "event": -1.2}
    )
    signal = (
        np.sin(2.0 * x1)
        + 0.4 * x2**2
        - 1.0
        + 0.5 * x3 * (x1 > 0)
        - 0.3 * np.log1p(x4)
        + code_effect
        + channel_effect.to_numpy()
    )
    noisy = signal + rng.normal(scale=0.4, size=n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "x4": x4, "code": code, "channel": channel})
    for col, share in [("x1", 0.10), ("x2", 0.06), ("x4", 0.08), ("code", 0.07), ("channel", 0.07)]:
        df.loc[rng.uniform(size=n) < share, col] = np.nan
    targets = {
        "reg": noisy,
        "pos": np.exp(noisy / 3.0),
        "bin": (noisy > np.median(noisy)).astype(int),
        "level": np.digitize(noisy, np.quantile(noisy, [0.3, 0.65])),
    }
    return df, targets


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    # HistGradientBoosting fits and predicts with OpenMP threads; on a small shared machine
    # their spin-waiting made a 0.3 s fit take 12 s. One thread changes no result.
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def data():
    df, targets = _dataset()
    cut = N_ROWS - N_HOLDOUT
    out = {
        "train": df.iloc[:cut].reset_index(drop=True),
        "holdout": df.iloc[cut:].reset_index(drop=True),
    }
    for name, y in targets.items():
        out[name] = y[:cut]
    out["int"] = INT_LABELS[out["level"]]
    out["str"] = STR_LABELS[out["level"]]
    return out


def _con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _assert_parity(report: ParityReport, n_holdout: int) -> None:
    assert report.passed, report.worst_row
    assert_evaluator(report)
    assert report.max_abs_diff <= PARITY_TOLERANCE, report.worst_row
    # The gate added adversarial rows on top of the holdout.
    assert report.rows_checked > n_holdout, report


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# -- GradientBoosting on raw numeric columns -------------------------------------------------


def _complete(frame: pd.DataFrame) -> pd.Series:
    return frame[NUMERIC].notna().all(axis=1)


def _gb_parity(model, holdout: pd.DataFrame) -> ParityReport:
    """check_parity on complete holdout rows plus the gate's own adversarial rows minus those
    with a missing value. GradientBoosting raises on NaN, and check_parity predicts all
    non-extreme rows in one batch, so one NaN row would abort it (a limitation of the gate);
    missing values are covered by test_gb_scores_null_where_the_library_refuses_nan."""
    complete = holdout[_complete(holdout)][NUMERIC]
    base = complete.head(5).to_dict("records")
    rows = [
        r
        for r in adversarial_rows(assemble(model), base)
        if not any(_missing(v) for v in r.values())
    ]
    report = check_parity(
        model, _con(), complete, tolerance=PARITY_TOLERANCE, adversarial=False, extra_rows=rows
    )
    # +-inf and beyond-float32 rows are refused by scikit-learn and so not compared.
    assert report.rows_refused_by_estimator > 0
    return report


GB_REGRESSORS = [
    ("squared_error", {}),
    ("absolute_error", {"loss": "absolute_error"}),
    ("huber", {"loss": "huber", "alpha": 0.8}),
    ("quantile", {"loss": "quantile", "alpha": 0.2}),
    ("init-zero", {"init": "zero"}),
    ("init-dummy-median", {"init": DummyRegressor(strategy="median")}),
    ("init-dummy-constant", {"init": DummyRegressor(strategy="constant", constant=-2.5)}),
]


@pytest.mark.parametrize("params", [p for _, p in GB_REGRESSORS], ids=[i for i, _ in GB_REGRESSORS])
def test_gb_regressor_parity(data, params: dict) -> None:
    train = data["train"]
    ok = _complete(train).to_numpy()
    model = GradientBoostingRegressor(**{**GB_KW, **params})
    model.fit(train[ok][NUMERIC], data["reg"][ok])
    _assert_parity(_gb_parity(model, data["holdout"]), 200)


GB_CLASSIFIERS = [
    ("binary", "bin", {}),
    ("binary-exponential", "bin", {"loss": "exponential"}),
    ("binary-init-zero", "bin", {"init": "zero"}),
    ("binary-init-dummy-prior", "bin", {"init": DummyClassifier(strategy="prior")}),
    ("multiclass-int", "int", {}),
    ("multiclass-str", "str", {}),
    ("multiclass-init-zero", "str", {"init": "zero"}),
]


@pytest.mark.parametrize(
    ("target", "params"),
    [pytest.param(t, p, id=i) for i, t, p in GB_CLASSIFIERS],
)
def test_gb_classifier_parity(data, target: str, params: dict) -> None:
    train = data["train"]
    ok = _complete(train).to_numpy()
    model = GradientBoostingClassifier(**{**GB_KW, **params})
    model.fit(train[ok][NUMERIC], data[target][ok])
    task = assemble(model).task
    assert task == ("classifier" if target == "bin" else "multiclass")
    _assert_parity(_gb_parity(model, data["holdout"]), 200)


def test_gb_default_init_is_the_prior_not_zero(data) -> None:
    # The start value matters: the same trees with init="zero" score differently, so the
    # parity above would catch a dropped or wrong init.
    train = data["train"]
    ok = _complete(train).to_numpy()
    model = GradientBoostingClassifier(**GB_KW).fit(train[ok][NUMERIC], data["bin"][ok])
    start = model._raw_predict_init(np.zeros((1, 4), dtype=np.float32))[0, 0]
    assert abs(start) > 1e-3


def _null_rows(holdout: pd.DataFrame) -> pd.DataFrame:
    first = holdout[_complete(holdout)].iloc[[0]]
    rows = [first]
    for col in NUMERIC:
        rows.append(first.assign(**{col: np.nan}))
    rows.append(first.assign(**dict.fromkeys(NUMERIC, np.nan)))
    return pd.concat(rows, ignore_index=True)[NUMERIC]


@pytest.mark.parametrize("target", ["reg", "bin", "str"])
def test_gb_scores_null_where_the_library_refuses_nan(data, target: str) -> None:
    train = data["train"]
    ok = _complete(train).to_numpy()
    cls = GradientBoostingRegressor if target == "reg" else GradientBoostingClassifier
    model = cls(**GB_KW).fit(train[ok][NUMERIC], data[target][ok])
    rows = _null_rows(data["holdout"])
    with pytest.raises(ValueError, match="NaN"):
        model.predict(rows.iloc[[1]])
    con = _con()
    con.register("src", rows.assign(k=np.arange(len(rows))))
    con.execute("CREATE TABLE leads AS SELECT * FROM src")
    result = con.execute(to_sql(model, "leads", key="k"))
    names = [d[0] for d in result.description]
    got = {r[0]: dict(zip(names[1:], r[1:], strict=True)) for r in result.fetchall()}
    scores = [n for n in names if n.startswith("score")]
    expected = model.predict_proba(rows.iloc[[0]])[0] if target != "reg" else None
    # The complete row scores; every row with a missing input gets NULL, not a guess.
    assert all(got[0][n] is not None for n in scores)
    if target == "str":
        assert [got[0][f"score_{c}"] for c in model.classes_] == pytest.approx(expected, abs=1e-9)
    for k in range(1, len(rows)):
        assert all(got[k][n] is None for n in scores), got[k]


def test_gb_multiclass_predicted_class_is_null_when_refused(data) -> None:
    train = data["train"]
    ok = _complete(train).to_numpy()
    model = GradientBoostingClassifier(**GB_KW).fit(train[ok][NUMERIC], data["str"][ok])
    rows = _null_rows(data["holdout"]).iloc[[-1]]
    con = _con()
    con.register("leads", rows.assign(k=[1]))
    (row,) = con.execute(to_sql(model, "leads", key="k")).fetchall()
    assert row[-1] is None, row


GB_REFUSED = [
    (GradientBoostingClassifier, {"init": LogisticRegression()}, "init=LogisticRegression"),
    (
        GradientBoostingClassifier,
        {"init": DummyClassifier(strategy="stratified")},
        "init=DummyClassifier(strategy='stratified')",
    ),
    (GradientBoostingRegressor, {"init": LinearRegression()}, "init=LinearRegression"),
]


@pytest.mark.parametrize(("cls", "params", "named"), GB_REFUSED)
def test_gb_init_estimators_that_depend_on_x_are_refused(data, cls, params, named) -> None:
    train = data["train"]
    ok = _complete(train).to_numpy()
    y = data["reg" if cls is GradientBoostingRegressor else "bin"][ok]
    model = cls(n_estimators=3, max_depth=2, random_state=SEED, **params)
    model.fit(train[ok][NUMERIC], y)
    with pytest.raises(UnsupportedError) as err:
        to_sql(model, "leads")
    msg = str(err.value)
    assert cls.__name__ in msg and named in msg and "init='zero'" in msg


# -- GradientBoosting behind imputation and one-hot encoding ---------------------------------


def _prep() -> ColumnTransformer:
    categorical = Pipeline(
        [
            ("imp", SimpleImputer(strategy="constant", fill_value="missing")),
            ("ohe", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), NUMERIC),
            ("cat", categorical, ["channel"]),
        ]
    )


@pytest.mark.parametrize(
    ("cls", "target", "params"),
    [
        pytest.param(GradientBoostingClassifier, "bin", {}, id="binary"),
        pytest.param(GradientBoostingClassifier, "str", {}, id="multiclass"),
        pytest.param(GradientBoostingRegressor, "reg", {"loss": "huber"}, id="regressor"),
    ],
)
def test_gb_pipeline_parity(data, cls, target: str, params: dict) -> None:
    cols = [*NUMERIC, "channel"]
    model = Pipeline([("prep", _prep()), ("gb", cls(**{**GB_KW, **params}))])
    model.fit(data["train"][cols], data[target])
    holdout = data["holdout"][cols]
    assert holdout.isna().any().sum() == 4  # NULLs reach the imputers
    # No row is refused for missing values: the imputers fill them before the trees.
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


# -- HistGradientBoosting: losses, links, native missing values ------------------------------


def _hgb_trees(model) -> list:
    return [p for iteration in model._predictors for p in iteration]


def _missing_routes(model) -> set[int]:
    routes: set[int] = set()
    for p in _hgb_trees(model):
        split = p.nodes[~p.nodes["is_leaf"].astype(bool)]
        routes |= set(split["missing_go_to_left"].tolist())
    return routes


HGB_CASES = [
    ("reg-squared", HistGradientBoostingRegressor, "reg", {}),
    ("reg-absolute", HistGradientBoostingRegressor, "reg", {"loss": "absolute_error"}),
    ("reg-quantile", HistGradientBoostingRegressor, "reg", {"loss": "quantile", "quantile": 0.8}),
    ("reg-poisson", HistGradientBoostingRegressor, "pos", {"loss": "poisson"}),
    ("reg-gamma", HistGradientBoostingRegressor, "pos", {"loss": "gamma"}),
    (
        "reg-interaction-cst",
        HistGradientBoostingRegressor,
        "reg",
        {"interaction_cst": [{0, 1}, {2, 3}]},
    ),
    ("binary", HistGradientBoostingClassifier, "bin", {}),
    ("multiclass-int", HistGradientBoostingClassifier, "int", {}),
    ("multiclass-str", HistGradientBoostingClassifier, "str", {}),
]


@pytest.mark.parametrize(
    ("cls", "target", "params"), [pytest.param(c, t, p, id=i) for i, c, t, p in HGB_CASES]
)
def test_hgb_trained_on_nan_parity(data, cls, target: str, params: dict) -> None:
    train = data["train"][NUMERIC]
    model = cls(**{**HGB_KW, **params}).fit(train, data[target])
    # NaN was seen at fit: missing values were routed per node, both ways.
    assert _missing_routes(model) == {0, 1}
    holdout = data["holdout"][NUMERIC]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    # HistGradientBoosting scores every row, +-inf and 1e300 included.
    assert report.rows_refused_by_estimator == 0
    _assert_parity(report, len(holdout))


@pytest.mark.parametrize("target", ["reg", "str"])
def test_hgb_trained_without_nan_scored_with_nan_parity(data, target: str) -> None:
    train = data["train"]
    ok = _complete(train).to_numpy()
    cls = HistGradientBoostingRegressor if target == "reg" else HistGradientBoostingClassifier
    model = cls(**HGB_KW).fit(train[ok][NUMERIC], data[target][ok])
    # No NaN at fit: scikit-learn (grower.py) sent missing values to the child with more
    # training samples (ties right) and stored that as the node's flag, which the SQL follows.
    for p in _hgb_trees(model):
        split = p.nodes[~p.nodes["is_leaf"].astype(bool)]
        more_left = p.nodes["count"][split["left"]] > p.nodes["count"][split["right"]]
        assert (split["missing_go_to_left"].astype(bool) == more_left).all()
    holdout = data["holdout"][NUMERIC]
    assert holdout.isna().any(axis=1).sum() > 40
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


def test_hgb_thresholds_compare_in_float64(data) -> None:
    # HistGradientBoosting compares float64 x <= threshold (no float32 cast, unlike the other
    # scikit-learn trees). Take a root split where the double just above the threshold rounds
    # to a float32 at or below it: a float32 compare would send it left, float64 sends it right.
    model = HistGradientBoostingRegressor(**HGB_KW).fit(data["train"][NUMERIC], data["reg"])
    roots = [p.nodes[0] for p in _hgb_trees(model)]
    root = next(
        r
        for r in roots
        if float(np.float32(np.nextafter(r["num_threshold"], np.inf))) <= r["num_threshold"]
    )
    t = float(root["num_threshold"])
    above = float(np.nextafter(t, np.inf))
    row = data["holdout"][NUMERIC].iloc[[0]]
    col = NUMERIC[int(root["feature_idx"])]
    frame = pd.concat([row.assign(**{col: t}), row.assign(**{col: above})], ignore_index=True)
    con = _con()
    con.register("leads", frame.assign(k=[0, 1]))
    got = dict(con.execute(to_sql(model, "leads", key="k")).fetchall())
    expected = model.predict(frame)
    assert expected[0] != expected[1]
    assert abs(got[0] - expected[0]) <= PARITY_TOLERANCE
    assert abs(got[1] - expected[1]) <= PARITY_TOLERANCE


# -- HistGradientBoosting: native categorical features ---------------------------------------


def _categorical_splits(model) -> int:
    return sum(
        int(p.nodes["is_categorical"][~p.nodes["is_leaf"].astype(bool)].sum())
        for p in _hgb_trees(model)
    )


def _category_rows(holdout: pd.DataFrame, levels: list) -> list[dict]:
    """Rows that vary only `code` / `channel`: every level, NULL, NaN, and values the model never
    saw (unseen codes, fractions, negative and large values, unseen and hostile strings)."""
    first = {
        k: (None if _missing(v) else (v if k == "channel" else float(v)))
        for k, v in holdout.iloc[0].items()
    }
    rows = []
    unseen_codes = [6.0, 7.0, -2.0, -5.0, 2.5, 0.5, -0.0, 255.0, 256.0, 1e6, -1e6, float("nan")]
    for v in [None, *[float(c) for c in CODES], *unseen_codes]:
        rows.append({**first, "code": v})
    if "channel" in first:
        for v in [None, *levels, "unseen", "", "WEB", " web"]:
            rows.append({**first, "channel": v})
    return rows


CATEGORICAL_FORMS = [
    pytest.param(["code"], id="names"),
    pytest.param([4], id="indices"),
    pytest.param([False, False, False, False, True], id="mask"),
]
CATEGORICAL_CASES = [
    # Every way of naming the categorical column, with and without NaN in it at fit time.
    *[
        pytest.param(
            HistGradientBoostingRegressor, "reg", form.values[0], nan, id=f"reg-{form.id}-{tag}"
        )
        for form in CATEGORICAL_FORMS
        for nan, tag in [(True, "code-nan"), (False, "code-complete")]
    ],
    pytest.param(
        HistGradientBoostingClassifier, "str", ["code"], True, id="multiclass-names-code-nan"
    ),
    pytest.param(
        HistGradientBoostingClassifier, "bin", [4], False, id="binary-indices-code-complete"
    ),
]


@pytest.mark.parametrize(("cls", "target", "categorical", "code_nan_at_fit"), CATEGORICAL_CASES)
def test_hgb_integer_coded_categorical_parity(
    data, cls, target: str, categorical, code_nan_at_fit: bool
) -> None:
    cols = [*NUMERIC, "code"]
    train, y = data["train"][cols], data[target]
    if not code_nan_at_fit:
        keep = train["code"].notna().to_numpy()
        train, y = train[keep], y[keep]
    model = cls(**HGB_KW, categorical_features=categorical).fit(train, y)
    assert list(model.is_categorical_) == [False] * 4 + [True]
    assert _categorical_splits(model) > 0
    holdout = data["holdout"][cols]
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        extra_rows=_category_rows(holdout, []),
    )
    _assert_parity(report, len(holdout))


@pytest.mark.parametrize(
    ("cls", "target"),
    [
        (HistGradientBoostingClassifier, "bin"),
        (HistGradientBoostingClassifier, "int"),
        (HistGradientBoostingRegressor, "pos"),
    ],
    ids=["binary", "multiclass", "poisson"],
)
def test_hgb_from_dtype_string_categories_parity(data, cls, target: str) -> None:
    # Fitted on pandas category columns; scored from the warehouse, where `channel` is a plain
    # string column and `code` a number: the model's own OrdinalEncoder maps both at predict.
    cols = [*NUMERIC, "code", "channel"]
    train = data["train"][cols].astype({"channel": "category", "code": "category"})
    params = {"loss": "poisson"} if target == "pos" else {}
    model = cls(**HGB_KW, **params, categorical_features="from_dtype").fit(train, data[target])
    assert list(model.is_categorical_) == [False] * 4 + [True, True]
    assert _categorical_splits(model) > 0
    holdout = data["holdout"][cols]
    assert holdout["channel"].dtype == object
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        extra_rows=_category_rows(holdout, CHANNELS),
    )
    _assert_parity(report, len(holdout))


def test_hgb_categorical_after_imputation_in_a_pipeline_parity(data) -> None:
    # A string category imputed to "missing" and then split natively: the category test reads
    # the imputed column, and unseen levels still take the model's missing route.
    cols = [*NUMERIC, "channel"]
    prep = ColumnTransformer(
        [
            ("num", "passthrough", NUMERIC),
            ("cat", SimpleImputer(strategy="constant", fill_value="missing"), ["channel"]),
        ]
    )
    hgb = HistGradientBoostingClassifier(**HGB_KW, categorical_features=[4])
    model = Pipeline([("prep", prep), ("hgb", hgb)]).fit(data["train"][cols], data["str"])
    assert _categorical_splits(model[-1]) > 0
    holdout = data["holdout"][cols]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


def test_to_sql_multiclass_boosting_columns(data) -> None:
    cols = [*NUMERIC, "code", "channel"]
    train = data["train"][cols].astype({"channel": "category"})
    model = HistGradientBoostingClassifier(**HGB_KW, categorical_features="from_dtype")
    model.fit(train, data["int"])
    holdout = data["holdout"][cols].assign(lead_id=np.arange(N_HOLDOUT) + 100)
    con = _con()
    con.register("src", holdout)
    con.execute("CREATE TABLE leads AS SELECT * FROM src")
    result = con.execute(to_sql(model, "leads", key="lead_id"))
    names = [d[0] for d in result.description]
    assert names == ["lead_id", *[f"score_{c}" for c in model.classes_], "predicted_class"]
    got = {r[0]: r[-1] for r in result.fetchall()}
    predicted = model.predict(holdout[cols])
    assert [got[k] for k in holdout["lead_id"]] == predicted.tolist()


@pytest.mark.parametrize("cls", [GradientBoostingClassifier, HistGradientBoostingClassifier])
@pytest.mark.parametrize("target", ["bin", "str"], ids=["binary", "multiclass"])
def test_decision_function_margins(data, cls, target: str) -> None:
    # The raw margins a calibrating wrapper reads, compiled and run against decision_function.
    train = data["train"]
    ok = _complete(train).to_numpy()
    kw = GB_KW if cls is GradientBoostingClassifier else HGB_KW
    model = cls(**kw).fit(train[ok][NUMERIC], data[target][ok])
    inputs = [ast.ColumnRef(n) for n in NUMERIC]
    margins = decision_function(model, inputs)
    margins = margins if isinstance(margins, list) else [margins]
    holdout = data["holdout"][_complete(data["holdout"])][NUMERIC]
    expected = model.decision_function(holdout).reshape(len(holdout), -1)
    assert expected.shape[1] == len(margins)
    con = _con()
    con.register("leads", holdout.assign(k=np.arange(len(holdout))))
    for j, margin in enumerate(margins):
        sql = SqlEmitter().render(Assembled(tuple(NUMERIC), margin, "decision"), "leads", "k")
        got = dict(con.execute(sql).fetchall())
        diff = max(abs(got[i] - e) for i, e in enumerate(expected[:, j]))
        assert diff <= PARITY_TOLERANCE

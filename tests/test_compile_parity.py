"""End-to-end parity: every supported estimator, compiled to SQL, run in DuckDB and compared
with the library's own predict_proba / predict on holdout rows plus the gate's adversarial rows
(NULL, NaN, +-inf, extremes, float32/float64 neighbours of every threshold, unseen and hostile
category levels)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import mlsm_py.compile.assemblers.sklearn_trees as sklearn_trees
from mlsm_py import to_sql
from mlsm_py.compile.assemblers.lightgbm import ZERO_THRESHOLD
from mlsm_py.errors import ParityError
from mlsm_py.parity.gate import ParityReport, check_parity, compare, gate
from tests.helpers import assert_evaluator, zero_probes

# The SQL repeats the library's float64 arithmetic step for step; what differs is the order of
# a few additions (BLAS dot products, the forest's running sum) and the algebraic form of the
# sigmoid, each worth a few ulps (~1e-16 on a score in [0, 1] or of order 1). 1e-9 leaves six
# orders of magnitude for that and nothing else: one misrouted tree node moves a score by a
# whole leaf difference, one wrong coefficient digit by far more than 1e-9.
PARITY_TOLERANCE = 1e-9

SEED = 0
N_ROWS = 2000
N_HOLDOUT = 400
NUMERIC = ["x1", "x2", "x3", "x4"]
CHANNELS = ["web", "email", "ads", "referral", "event"]

pytestmark = [
    # scikit-learn casts the gate's +-1e300 rows to float32 before refusing them.
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    # LightGBM inside a Pipeline is fitted on the ColumnTransformer's unnamed array.
    pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning"),
]


# -- data ------------------------------------------------------------------------------------


def _dataset(seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """~2000 leads with a non-linear signal. Returns (frame, regression y, binary y).

    x1: normal, 10% missing (NaN); x2: uniform, 6% missing; x3: counts with many exact zeros,
    no missing; x4: skewed, 8% missing; channel: categorical, 7% missing (NaN, as
    mlsm_py.frames hands missing categories to a model).
    """
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
        + 0.8 * (x2 > 1.0) * (x3 == 0)
    )
    y_reg = signal + rng.normal(scale=0.3, size=n)
    y_bin = (signal + rng.logistic(scale=0.5, size=n) > np.median(signal)).astype(int)
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "x4": x4, "channel": channel})
    df.loc[rng.uniform(size=n) < 0.10, "x1"] = np.nan
    df.loc[rng.uniform(size=n) < 0.06, "x2"] = np.nan
    df.loc[rng.uniform(size=n) < 0.08, "x4"] = np.nan
    df.loc[rng.uniform(size=n) < 0.07, "channel"] = np.nan
    return df, y_reg, y_bin


@pytest.fixture(scope="module")
def data():
    df, y_reg, y_bin = _dataset()
    train, hold = slice(0, N_ROWS - N_HOLDOUT), slice(N_ROWS - N_HOLDOUT, N_ROWS)
    return {
        "train": df.iloc[train].reset_index(drop=True),
        "holdout": df.iloc[hold].reset_index(drop=True),
        "regressor": y_reg[train],
        "classifier": y_bin[train],
    }


def _con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _assert_parity(report: ParityReport, n_holdout: int) -> None:
    assert report.passed, report.worst_row
    assert_evaluator(report)
    # Absolute where |score| <= 1, relative beyond (a ~1e11 regression output has ulps of 1e-5).
    assert report.max_scaled_diff <= PARITY_TOLERANCE, report.worst_row
    assert report.rows_above_tolerance == 0
    # The gate added adversarial rows on top of the holdout.
    assert report.rows_checked > n_holdout, report


# -- every estimator inside a preprocessing pipeline -----------------------------------------


def _preprocess(passthrough_raw: bool) -> ColumnTransformer:
    numeric = Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())])
    categorical = Pipeline(
        [
            ("imp", SimpleImputer(strategy="constant", fill_value="missing")),
            ("ohe", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [
            ("num", numeric, ["x1", "x2"]),
            # Imputed but not scaled: the gate then probes this column's split neighbours.
            ("cnt", SimpleImputer(strategy="constant", fill_value=0.0), ["x3"]),
            ("cat", categorical, ["channel"]),
            # Trees and LightGBM read x4 raw, NaN included; linear models drop it.
            ("raw", "passthrough" if passthrough_raw else "drop", ["x4"]),
        ]
    )


TREE_KW = {"max_depth": 6, "random_state": SEED}
FOREST_KW = {"n_estimators": 10, "max_depth": 6, "random_state": SEED}
LGBM_KW = {
    "n_estimators": 20,
    "num_leaves": 15,
    "max_depth": 5,
    "learning_rate": 0.2,
    "random_state": SEED,
    "n_jobs": 1,
    "verbose": -1,
}

# (id, task, factory, reads x4 raw)
PIPELINE_CASES = [
    ("logistic", "classifier", lambda: LogisticRegression(max_iter=1000), False),
    ("linear", "regressor", lambda: LinearRegression(), False),
    ("ridge", "regressor", lambda: Ridge(alpha=1.0), False),
    ("lasso", "regressor", lambda: Lasso(alpha=0.01), False),
    ("elasticnet", "regressor", lambda: ElasticNet(alpha=0.01, l1_ratio=0.5), False),
    ("tree-clf", "classifier", lambda: DecisionTreeClassifier(**TREE_KW), True),
    ("tree-reg", "regressor", lambda: DecisionTreeRegressor(**TREE_KW), True),
    ("forest-clf", "classifier", lambda: RandomForestClassifier(**FOREST_KW), True),
    ("forest-reg", "regressor", lambda: RandomForestRegressor(**FOREST_KW), True),
    ("extra-clf", "classifier", lambda: ExtraTreesClassifier(**FOREST_KW), True),
    ("extra-reg", "regressor", lambda: ExtraTreesRegressor(**FOREST_KW), True),
    ("lgbm-clf", "classifier", lambda: LGBMClassifier(**LGBM_KW), True),
    ("lgbm-reg", "regressor", lambda: LGBMRegressor(**LGBM_KW), True),
]


LINEAR_REGRESSORS = ("linear", "ridge", "lasso", "elasticnet")


def _case_marks(case_id: str) -> list:
    return []


@pytest.mark.parametrize(
    ("task", "make", "raw"),
    [pytest.param(t, m, r, id=i, marks=_case_marks(i)) for i, t, m, r in PIPELINE_CASES],
)
def test_pipeline_parity(data, task: str, make, raw: bool) -> None:
    model = Pipeline([("prep", _preprocess(raw)), ("model", make())])
    model.fit(data["train"], data[task])
    holdout = data["holdout"]
    assert holdout[["x1", "x2", "x4", "channel"]].isna().any().all()

    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))
    # The model really is the kind asked for: probabilities, or unbounded predictions.
    scores = model.predict_proba(holdout)[:, 1] if task == "classifier" else model.predict(holdout)
    assert np.all(np.isfinite(scores))
    if task == "classifier":
        assert 0.0 <= scores.min() < 0.5 < scores.max() <= 1.0


def _edge_rows(holdout: pd.DataFrame) -> list[dict]:
    """NULL, NaN, +-inf, moderate extremes and unseen/hostile levels, one column at a time:
    the gate's adversarial rows minus its +-1e12 / +-1e300 magnitudes."""
    first = {
        k: (None if pd.isna(v) else (v if k == "channel" else float(v)))
        for k, v in holdout.iloc[0].items()
    }
    rows: list[dict] = [dict.fromkeys(first)]
    for col in NUMERIC:
        for v in [None, float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e3, -1e3]:
            rows.append({**first, col: v})
    for v in [None, "missing", "", "unseen", "x'; --", "{{ x }}", "Zürich ✓", *CHANNELS]:
        rows.append({**first, "channel": v})
    return rows


@pytest.mark.parametrize("case", LINEAR_REGRESSORS)
def test_linear_regressor_parity_without_extreme_magnitudes(data, case: str) -> None:
    # The counterpart of the xfailed pipeline cases above: the same models agree within the
    # tolerance on holdout rows plus every missing / non-finite / unseen-level edge case.
    ((task, make, raw),) = [(t, m, r) for i, t, m, r in PIPELINE_CASES if i == case]
    model = Pipeline([("prep", _preprocess(raw)), ("model", make())])
    model.fit(data["train"], data[task])
    holdout = data["holdout"]
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        adversarial=False,
        extra_rows=_edge_rows(holdout),
    )
    _assert_parity(report, len(holdout))


@pytest.mark.parametrize(
    ("task", "make", "raw"),
    [pytest.param(t, m, r, id=i) for i, t, m, r in PIPELINE_CASES if i in ("logistic", "lgbm-clf")],
)
def test_pipeline_sql_scores_a_warehouse_table_by_key(data, task: str, make, raw: bool) -> None:
    # Outside the gate: a real table with a key column and NULLs, scored by the to_sql text.
    model = Pipeline([("prep", _preprocess(raw)), ("model", make())])
    model.fit(data["train"], data[task])
    holdout = data["holdout"]
    con = _con()
    con.register("src", holdout.assign(lead_id=np.arange(len(holdout)) * 7 + 3))
    con.execute("CREATE TABLE leads AS SELECT * FROM src")
    got = dict(con.execute(to_sql(model, "leads", key="lead_id")).fetchall())
    expected = model.predict_proba(holdout)[:, 1]
    assert len(got) == len(holdout)
    for i, e in enumerate(expected):
        assert abs(got[i * 7 + 3] - e) <= PARITY_TOLERANCE


# -- trees on raw numeric columns with native missing-value routing --------------------------

NATIVE_TREES = [
    ("tree-clf", "classifier", lambda: DecisionTreeClassifier(**TREE_KW)),
    ("tree-reg", "regressor", lambda: DecisionTreeRegressor(**TREE_KW)),
    ("forest-clf", "classifier", lambda: RandomForestClassifier(**FOREST_KW)),
    ("forest-reg", "regressor", lambda: RandomForestRegressor(**FOREST_KW)),
    ("extra-clf", "classifier", lambda: ExtraTreesClassifier(**FOREST_KW)),
    ("extra-reg", "regressor", lambda: ExtraTreesRegressor(**FOREST_KW)),
]


def _trees_of(model) -> list:
    return [e.tree_ for e in model.estimators_] if hasattr(model, "estimators_") else [model.tree_]


@pytest.mark.parametrize(("task", "make"), [pytest.param(t, m, id=i) for i, t, m in NATIVE_TREES])
def test_tree_trained_on_nan_parity(data, task: str, make) -> None:
    train = data["train"][NUMERIC]
    assert train.isna().any().sum() == 3
    model = make().fit(train, data[task])
    # NaN was seen at fit time, so the routing of missing values was learned per node; both
    # directions occur, so the SQL's "IS NULL OR" and ELSE routes are both exercised.
    routes = set()
    for tree in _trees_of(model):
        split = tree.children_left != -1
        routes |= set(tree.missing_go_to_left[split].tolist())
    assert routes == {0, 1}
    holdout = data["holdout"][NUMERIC]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


@pytest.mark.parametrize(("task", "make"), [pytest.param(t, m, id=i) for i, t, m in NATIVE_TREES])
def test_tree_trained_without_nan_scored_with_nan_parity(data, task: str, make) -> None:
    train = data["train"][NUMERIC]
    complete = train.notna().all(axis=1).to_numpy()
    model = make().fit(train[complete], data[task][complete])
    holdout = data["holdout"][NUMERIC]
    assert holdout.isna().any(axis=1).sum() > 50  # scored with missing values
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


# -- LightGBM missing-value types ------------------------------------------------------------


def _missing_types(model) -> set[str]:
    out: set[str] = set()

    def walk(node: dict) -> None:
        if "leaf_value" in node:
            return
        out.add(node["missing_type"])
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in model.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return out


ZERO_PROBES = zero_probes()


def _zero_small(col: pd.Series) -> pd.Series:
    """Small values become exact zeros; NaN stays NaN."""
    return col.where(col.isna() | (col.abs() > 0.3), 0.0)


def _zero_rows(base: pd.DataFrame) -> list[dict]:
    rows = []
    first = {k: (None if pd.isna(v) else float(v)) for k, v in base.iloc[0].items()}
    for col in NUMERIC:
        for v in ZERO_PROBES:
            rows.append({**first, col: v})
    return rows


LGBM_MISSING_CASES = [
    # (id, params, missing type expected in the dump, signed data, marks)
    ("zero-as-missing-signed", {"zero_as_missing": True}, "Zero", True, []),
    ("use-missing-false-nonneg", {"use_missing": False}, "None", False, []),
    ("missing-nan-nonneg", {}, "NaN", False, []),
    ("use-missing-false-signed", {"use_missing": False}, "None", True, []),
    ("missing-nan-signed", {}, "NaN", True, []),
]


def _with_zeros(frame: pd.DataFrame, signed: bool) -> pd.DataFrame:
    # x3 is mostly exact zeros already; make zeros common in x1 too. NaN stays NaN.
    out = frame.assign(x1=_zero_small(frame["x1"]))
    return out if signed else out.abs()


@pytest.mark.parametrize(
    ("params", "expected_type", "signed"),
    [pytest.param(p, e, sg, id=i, marks=mk) for i, p, e, sg, mk in LGBM_MISSING_CASES],
)
@pytest.mark.parametrize("cls", [LGBMClassifier, LGBMRegressor], ids=["clf", "reg"])
def test_lightgbm_missing_types_parity(
    data, cls, params: dict, expected_type: str, signed: bool
) -> None:
    train = _with_zeros(data["train"][NUMERIC], signed)
    assert (train == 0.0).any().sum() >= 2 and train.isna().any().sum() == 3
    assert (train < 0).any().any() == signed
    task = "classifier" if cls is LGBMClassifier else "regressor"
    model = cls(**LGBM_KW, **params).fit(train, data[task])
    assert expected_type in _missing_types(model)
    holdout = _with_zeros(data["holdout"][NUMERIC], signed)
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        extra_rows=_zero_rows(holdout),
    )
    _assert_parity(report, len(holdout))


def test_lightgbm_negative_zero_threshold_minimal() -> None:
    """On signed data with exact zeros LightGBM splits at -float32(1e-35), and reads any
    |x| <= float32(1e-35) as 0.0; the SQL must too, down to the band's negative edge."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    x[np.abs(x) < 0.3] = 0.0
    X = pd.DataFrame({"x": x})
    model = LGBMRegressor(n_estimators=5, verbose=-1).fit(X, x**2 + (x == 0))
    neg_zero = -ZERO_THRESHOLD  # -1.0000000180025095e-35
    # LightGBM itself reads the value as 0.0 ...
    probe = pd.DataFrame({"x": [neg_zero, 0.0]})
    lib = model.predict(probe)
    assert lib[0] == lib[1]
    # ... the compiled SQL agrees at 0.0 and inside the zero band ...
    con = _con()
    con.register("t", pd.DataFrame({"k": [0, 1, 2], "x": [0.0, -1e-36, neg_zero]}))
    sql_scores = dict(con.execute(to_sql(model, "t", key="k")).fetchall())
    assert abs(sql_scores[0] - lib[1]) <= PARITY_TOLERANCE
    assert abs(sql_scores[1] - lib[1]) <= PARITY_TOLERANCE
    # ... and at the band's negative edge, which LightGBM also reads as 0.0.
    assert abs(sql_scores[2] - lib[0]) <= PARITY_TOLERANCE


# -- the gate is not vacuous -----------------------------------------------------------------


def _raw_tree(data) -> DecisionTreeClassifier:
    train = data["train"][NUMERIC]
    return DecisionTreeClassifier(**TREE_KW).fit(train, data["classifier"])


def test_naive_double_splits_are_caught_by_threshold_neighbours(data, monkeypatch) -> None:
    model = _raw_tree(data)
    holdout = data["holdout"][NUMERIC]
    assert check_parity(model, _con(), holdout).passed

    # Compare the double input with the double threshold, ignoring scikit-learn's float32 cast.
    monkeypatch.setattr(sklearn_trees, "float32_split", lambda threshold: (threshold, True))
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    assert not report.passed
    assert report.max_abs_diff > 0.01
    # The disagreement is on a value right next to a split threshold of that column.
    worst = report.worst_row
    assert abs(worst["sql_score"] - worst["python_score"]) == report.max_abs_diff
    thresholds = model.tree_.threshold[model.tree_.children_left != -1]
    features = model.tree_.feature[model.tree_.children_left != -1]
    near = [
        abs(worst[NUMERIC[f]] - t) <= 1e-6 * max(1.0, abs(t))
        for f, t in zip(features, thresholds, strict=True)
        if worst[NUMERIC[f]] is not None and not isinstance(worst[NUMERIC[f]], str)
    ]
    assert any(near), worst
    # Holdout rows alone do not reveal it: the adversarial neighbours are what catch it.
    holdout_only = check_parity(model, _con(), holdout, adversarial=False)
    assert holdout_only.passed


def test_gate_raises_parity_error_naming_the_model(data, monkeypatch) -> None:
    model = _raw_tree(data)
    holdout = data["holdout"][NUMERIC]
    good = check_parity(model, _con(), holdout)
    gate("lead_score_web", 3, good)  # passes silently

    monkeypatch.setattr(sklearn_trees, "float32_split", lambda threshold: (threshold, True))
    bad = check_parity(model, _con(), holdout)
    with pytest.raises(ParityError) as info:
        gate("lead_score_web", 3, bad)
    msg = str(info.value)
    assert "'lead_score_web'" in msg
    assert "v3" in msg
    assert f"differ by more than {PARITY_TOLERANCE:g}" in msg
    assert f"{bad.rows_above_tolerance} of {bad.rows_checked} rows" in msg


def test_gate_rejects_a_null_score() -> None:
    report = compare([{"x": 1.0}], np.array([0.25]), np.array([np.nan]), PARITY_TOLERANCE)
    assert not report.passed
    with pytest.raises(ParityError, match="'m'"):
        gate("m", 1, report)


# -- gate bugs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "make"),
    [
        pytest.param("classifier", lambda: LogisticRegression(max_iter=1000), id="logistic"),
        pytest.param("regressor", lambda: LinearRegression(), id="linear"),
    ],
)
def test_parity_of_bare_linear_model_on_complete_columns(data, task: str, make) -> None:
    train = data["train"][["x3"]]  # x3 has no missing values
    model = make().fit(train, data[task])
    holdout = data["holdout"][["x3"]]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")
def test_parity_when_both_sides_overflow_to_infinity() -> None:
    x = np.linspace(0.0, 1e-6, 50)
    model = Pipeline([("imp", SimpleImputer()), ("m", LinearRegression())])
    model.fit(pd.DataFrame({"x": x}), 1e9 * x)
    # The gate's 1e300 row: 1e300 * 1e9 overflows to inf in numpy and in DuckDB alike.
    report = check_parity(model, _con(), pd.DataFrame({"x": x}), tolerance=PARITY_TOLERANCE)
    assert np.isinf(model.predict(pd.DataFrame({"x": [1e300]}))[0])  # the row is in the gate
    assert np.isfinite(report.max_abs_diff)
    _assert_parity(report, len(x))

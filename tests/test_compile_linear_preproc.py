"""Linear models, calibration and preprocessing steps, compiled to SQL, run in DuckDB and compared
with scikit-learn 1.7 on holdout rows with NULLs, rare and unseen category levels and extremes.

Three kinds of check:
- probabilities (bounded): the parity gate itself, `check_parity`, holdout + its adversarial rows;
- unbounded scores (regressions, decision functions): the gate on holdout + edge rows at the
  absolute tolerance, and the extreme-magnitude rows at a relative tolerance (the gate's
  absolute 1e-9 cannot hold at scores of 1e13, see ABSOLUTE_TOLERANCE_BUG in
  tests/test_compile_parity.py);
- preprocessing on its own: every output column of a fitted step, as SQL, equal to
  `step.transform` bit for bit.
"""

from __future__ import annotations

import functools
import math
import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from scipy.special import expit, softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ARDRegression,
    BayesianRidge,
    ElasticNet,
    ElasticNetCV,
    HuberRegressor,
    Lars,
    Lasso,
    LassoCV,
    LassoLars,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    Perceptron,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    RidgeCV,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import SVC, LinearSVC, LinearSVR
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits
from xgboost import XGBClassifier

from mlsm_py import to_sql
from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled, assemble, transform
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.errors import UnsupportedError
from mlsm_py.frames import arrow_rows, python_rows
from mlsm_py.parity.gate import ParityReport, check_parity, input_types
from tests.helpers import assert_evaluator

# The SQL repeats scikit-learn's float64 operations; only the order of the additions in a dot
# product or a class sum differs (a few ulps, ~1e-16 on values of order 1). An isotonic slope
# multiplies that by at most ~100. 1e-9 leaves orders of magnitude for that and nothing else.
PARITY_TOLERANCE = 1e-9
# For scores of 1e12 and more: the same few ulps, relative.
RELATIVE_TOLERANCE = 1e-12

SEED = 11
N_ROWS = 1000
N_HOLDOUT = 200
NUMERIC = ["x1", "x2", "x3"]
# "radio" and "partner" are rare: below min_frequency and beyond max_categories.
CHANNELS = ["web", "email", "ads", "referral", "event", "partner", "radio"]
CHANNEL_P = [0.34, 0.25, 0.18, 0.12, 0.07, 0.03, 0.01]
TIERS = [1.0, 2.0, 3.0, 5.0]  # a numeric categorical column; 5.0 is rare
MULTI_LABELS = np.array(["cold", "warm", "Hot Lead"])

pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # multi_class= is deprecated in scikit-learn 1.5 but still decides predict_proba in 1.7.
    pytest.mark.filterwarnings("ignore:.*multi_class.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Using the 'liblinear' solver for multiclass:FutureWarning"),
    pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning"),
]


# -- data ------------------------------------------------------------------------------------


def _dataset() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Leads with NaN in every column. Returns (frame, regression y, binary y, 3-class y with
    string labels, one of which needs quoting as a column name).

    x1 normal (10% NaN), x2 uniform (6% NaN), x3 skewed with outliers (8% NaN), channel
    categorical with rare levels (7% NaN), tier numeric categorical {1, 2, 3, 5} (5% NaN).
    """
    rng = np.random.default_rng(SEED)
    n = N_ROWS
    x1 = rng.normal(size=n)
    x2 = rng.uniform(-3, 3, size=n)
    x3 = rng.lognormal(0.0, 1.5, size=n)
    channel = rng.choice(CHANNELS, size=n, p=CHANNEL_P).astype(object)
    tier = rng.choice(TIERS, size=n, p=[0.45, 0.3, 0.2, 0.05])
    effect = pd.Series(channel).map(
        dict(zip(CHANNELS, [0, 0.8, -0.6, 1.5, -1.2, 0.4, 2.0], strict=True))
    )
    signal = x1 + 0.5 * x2 - 0.2 * np.log(x3) + effect.to_numpy() + 0.3 * tier
    y_reg = signal + rng.normal(scale=0.3, size=n)
    noisy = signal + rng.logistic(scale=0.5, size=n)
    y_bin = (noisy > np.median(noisy)).astype(int)
    y_multi = MULTI_LABELS[np.digitize(noisy, np.quantile(noisy, [0.35, 0.7]))]
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "channel": channel, "tier": tier})
    for col, p in [("x1", 0.10), ("x2", 0.06), ("x3", 0.08), ("channel", 0.07), ("tier", 0.05)]:
        df.loc[rng.uniform(size=n) < p, col] = np.nan
    return df, y_reg, y_bin, y_multi


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # HistGradientBoosting predicts through OpenMP: on a busy two-core machine its threads
    # spin-wait on every one-row prediction the gate makes (a 10 s test took two minutes).
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data() -> dict:
    df, y_reg, y_bin, y_multi = _dataset()
    cut = N_ROWS - N_HOLDOUT
    return {
        "train": df.iloc[:cut].reset_index(drop=True),
        "holdout": df.iloc[cut:].reset_index(drop=True),
        "regressor": y_reg[:cut],
        "binary": y_bin[:cut],
        "multiclass": y_multi[:cut],
    }


TYPES = {"x1": "double", "x2": "double", "x3": "double", "channel": "string", "tier": "double"}
HOSTILE = ["", " ", "O'Reilly; --", '{{ env_var("HOME") }}', "Zürich ✓", "WEB"]


def _row(holdout: pd.DataFrame, i: int = 0) -> dict:
    return {k: (None if pd.isna(v) else v) for k, v in holdout.iloc[i].items()}


def _edge_rows(holdout: pd.DataFrame) -> list[dict]:
    """Missing, non-finite, moderate extremes, every level, unseen and hostile levels: one
    column at a time, on top of a holdout row."""
    base = _row(holdout)
    rows: list[dict] = [dict.fromkeys(base)]
    for col in NUMERIC:
        for v in [None, math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e3, -1e3]:
            rows.append({**base, col: v})
    for v in [None, *CHANNELS, "unseen", *HOSTILE]:
        rows.append({**base, "channel": v})
    for v in [None, math.nan, *TIERS, 4.0, 2.5, -0.0, 1e6]:
        rows.append({**base, "tier": v})
    return rows


def _extreme_rows(holdout: pd.DataFrame) -> list[dict]:
    base = _row(holdout, 1)
    return [{**base, col: v} for col in NUMERIC for v in (1e12, -1e12, 3.4e38, -3.4e38, 1e100)]


@functools.cache
def _con() -> duckdb.DuckDBPyConnection:
    # One in-memory database for the module; each check registers and drops its own rows.
    return duckdb.connect(":memory:")


def _prep(scaler=None, encoder=None) -> ColumnTransformer:
    numeric = Pipeline(
        [("imp", SimpleImputer(strategy="median")), ("sc", scaler or StandardScaler())]
    )
    categorical = Pipeline(
        [
            ("imp", SimpleImputer(strategy="constant", fill_value="missing")),
            ("enc", encoder or OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [
            ("num", numeric, NUMERIC),
            ("cat", categorical, ["channel"]),
            (
                "tier",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.1),
                ["tier"],
            ),
        ]
    )


def _fit(model, data: dict, task: str, prep: ColumnTransformer | None = None) -> Pipeline:
    pipe = Pipeline([("prep", prep or _prep()), ("model", model)])
    return pipe.fit(data["train"], data[task])


def _assert_gate(report: ParityReport, n_holdout: int) -> None:
    assert report.passed, report.worst_row
    assert_evaluator(report)
    assert report.max_abs_diff <= PARITY_TOLERANCE, report.worst_row
    assert report.rows_checked > n_holdout, report


def _sql_scores(model, rows: list[dict]) -> np.ndarray:
    types = input_types(assemble(model))
    con = _con()
    keyed = [{**r, "k": i} for i, r in enumerate(rows)]
    con.register("t", arrow_rows(keyed, types, "k"))
    got = dict(con.execute(to_sql(model, "t", key="k")).fetchall())
    con.unregister("t")
    return np.array([math.nan if got[i] is None else got[i] for i in range(len(rows))])


def _assert_unbounded_parity(model, holdout: pd.DataFrame, library_fn) -> None:
    """A regression or decision function: the gate on holdout + edge rows at the absolute
    tolerance; extreme magnitudes at the relative one."""
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        adversarial=False,
        extra_rows=_edge_rows(holdout),
    )
    _assert_gate(report, len(holdout))
    rows = _extreme_rows(holdout)
    expected = np.asarray(library_fn(python_rows(rows, TYPES)), dtype="float64")
    got = _sql_scores(model, rows)
    assert np.all(np.abs(expected) > 1e6)  # really extreme scores
    same = got == expected
    rel = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    assert np.all(same | (rel <= RELATIVE_TOLERANCE)), (got, expected)


# -- linear classifiers with probabilities ---------------------------------------------------

PROBA_CASES = [
    # (id, task, factory)
    ("logistic-binary", "binary", lambda: LogisticRegression(max_iter=1000)),
    (
        "logistic-binary-multinomial",
        "binary",
        lambda: LogisticRegression(multi_class="multinomial"),
    ),
    ("logistic-multinomial", "multiclass", lambda: LogisticRegression(max_iter=1000)),
    ("logistic-ovr", "multiclass", lambda: LogisticRegression(multi_class="ovr")),
    ("logistic-liblinear-ovr", "multiclass", lambda: LogisticRegression(solver="liblinear")),
    ("logistic-cv", "multiclass", lambda: LogisticRegressionCV(Cs=2, cv=2, max_iter=300)),
    ("sgd-log-binary", "binary", lambda: SGDClassifier(loss="log_loss", random_state=SEED)),
    ("sgd-log-multi", "multiclass", lambda: SGDClassifier(loss="log_loss", random_state=SEED)),
    ("sgd-huber-binary", "binary", lambda: SGDClassifier(loss="modified_huber", random_state=SEED)),
    (
        "sgd-huber-multi",
        "multiclass",
        lambda: SGDClassifier(loss="modified_huber", random_state=SEED),
    ),
]


@pytest.mark.parametrize(("task", "make"), [pytest.param(t, m, id=i) for i, t, m in PROBA_CASES])
def test_linear_classifier_probability_parity(data, task: str, make) -> None:
    model = _fit(make(), data, task)
    holdout = data["holdout"]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))
    proba = model.predict_proba(holdout)
    assert proba.shape[1] == (2 if task == "binary" else 3)
    # Not a degenerate model: the probabilities spread over (0, 1).
    assert proba.min() < 0.2 and proba.max() > 0.8


def test_modified_huber_gives_hard_zeros_and_ones(data) -> None:
    # The clip in (clip(d, -1, 1) + 1) / 2 matters only where |d| > 1: make sure it happens.
    model = _fit(SGDClassifier(loss="modified_huber", random_state=SEED), data, "binary")
    p = model.predict_proba(data["holdout"])[:, 1]
    assert (p == 0.0).any() and (p == 1.0).any() and ((p > 0) & (p < 1)).any()


def test_scikit_learn_probability_rules_the_compiler_relies_on(data) -> None:
    """What LogisticRegression.predict_proba computes in scikit-learn 1.7, checked on the
    library itself: softmax of the decision function for multinomial, normalised expit for
    one-vs-rest, softmax of (-d, d) for a binary multinomial model."""
    holdout = data["holdout"]
    multinomial = _fit(LogisticRegression(max_iter=1000), data, "multiclass")
    d = multinomial.decision_function(holdout)
    np.testing.assert_array_equal(multinomial.predict_proba(holdout), softmax(d, axis=1))

    ovr = _fit(LogisticRegression(multi_class="ovr"), data, "multiclass")
    e = expit(ovr.decision_function(holdout))
    np.testing.assert_array_equal(ovr.predict_proba(holdout), e / e.sum(axis=1, keepdims=True))

    binary = _fit(LogisticRegression(multi_class="multinomial"), data, "binary")
    d = binary.decision_function(holdout)
    np.testing.assert_array_equal(binary.predict_proba(holdout), softmax(np.c_[-d, d], axis=1))
    # ... which is not the plain sigmoid of d: the SQL must not use it.
    assert np.abs(binary.predict_proba(holdout)[:, 1] - expit(d)).max() > 0.01


# -- decision functions and regressions (unbounded scores) -----------------------------------

DECISION_CASES = [
    ("linear-svc", lambda: LinearSVC(max_iter=5000)),
    ("sgd-hinge", lambda: SGDClassifier(random_state=SEED)),
    ("sgd-perceptron-loss", lambda: SGDClassifier(loss="perceptron", random_state=SEED)),
    ("ridge-classifier", lambda: RidgeClassifier()),
    ("ridge-classifier-cv", lambda: RidgeClassifierCV()),
    ("perceptron", lambda: Perceptron(random_state=SEED)),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in DECISION_CASES])
def test_decision_function_parity(data, make) -> None:
    model = _fit(make(), data, "binary")
    assert not hasattr(model, "predict_proba")
    assert assemble(model).task == "decision"
    _assert_unbounded_parity(model, data["holdout"], model.decision_function)


REGRESSOR_CASES = [
    ("linear", lambda: LinearRegression()),
    ("ridge", lambda: Ridge(alpha=1.0)),
    ("ridge-cv", lambda: RidgeCV()),
    ("lasso", lambda: Lasso(alpha=0.01)),
    ("lasso-cv", lambda: LassoCV(cv=3, random_state=SEED)),
    ("elasticnet", lambda: ElasticNet(alpha=0.01, l1_ratio=0.5)),
    ("elasticnet-cv", lambda: ElasticNetCV(cv=3, random_state=SEED)),
    # Unrestricted, Lars fits the collinear one-hot block with cancelling 1e13 weights.
    ("lars", lambda: Lars(n_nonzero_coefs=6)),
    ("lasso-lars", lambda: LassoLars(alpha=0.001)),
    ("bayesian-ridge", lambda: BayesianRidge()),
    ("ard", lambda: ARDRegression()),
    ("huber", lambda: HuberRegressor(max_iter=500)),
    ("sgd-regressor", lambda: SGDRegressor(random_state=SEED)),
    ("linear-svr", lambda: LinearSVR(max_iter=5000, random_state=SEED)),
    ("linear-no-intercept", lambda: LinearRegression(fit_intercept=False)),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in REGRESSOR_CASES])
def test_linear_regressor_parity(data, make) -> None:
    model = _fit(make(), data, "regressor")
    assert assemble(model).task == "regressor"
    _assert_unbounded_parity(model, data["holdout"], model.predict)


MULTICLASS_WITHOUT_PROBA = [
    ("linear-svc", lambda: LinearSVC()),
    ("sgd-hinge", lambda: SGDClassifier(random_state=SEED)),
    ("ridge-classifier", lambda: RidgeClassifier()),
    ("perceptron", lambda: Perceptron()),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in MULTICLASS_WITHOUT_PROBA])
def test_multiclass_without_predict_proba_is_refused(data, make) -> None:
    model = _fit(make(), data, "multiclass")
    with pytest.raises(UnsupportedError) as info:
        to_sql(model, "t")
    msg = str(info.value)
    assert type(model[-1]).__name__ in msg
    assert "3 classes" in msg and "predict_proba" in msg


def test_multi_output_regressor_is_refused(data) -> None:
    y = np.c_[data["regressor"], -data["regressor"]]
    model = Pipeline([("prep", _prep()), ("m", Ridge())]).fit(data["train"], y)
    with pytest.raises(UnsupportedError, match="multi-output Ridge"):
        to_sql(model, "t")


# -- CalibratedClassifierCV ------------------------------------------------------------------

LGBM_KW = {"n_estimators": 15, "num_leaves": 7, "random_state": SEED, "verbose": -1, "n_jobs": 1}

BASES = {
    # id: (factory, the response its calibrators see)
    "logistic": (lambda: LogisticRegression(max_iter=1000), "decision_function"),
    "linear-svc": (lambda: LinearSVC(max_iter=5000), "decision_function"),
    "sgd-hinge": (lambda: SGDClassifier(random_state=SEED), "decision_function"),
    "tree": (lambda: DecisionTreeClassifier(max_depth=4, random_state=SEED), "predict_proba"),
    "forest": (
        lambda: RandomForestClassifier(n_estimators=5, max_depth=4, random_state=SEED),
        "predict_proba",
    ),
    "lightgbm": (lambda: LGBMClassifier(**LGBM_KW), "predict_proba"),
    "gradient-boosting": (
        lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=SEED),
        "decision_function",
    ),
    "hist-gradient-boosting": (
        lambda: HistGradientBoostingClassifier(max_iter=10, random_state=SEED),
        "decision_function",
    ),
}

# Both methods on a margin base and a probability base with ensemble=True (one
# classifier/calibrator pair per fold, averaged); ensemble=False (one classifier on all rows,
# calibrated on cross-validated responses) once per method; every other base once.
CALIBRATION_CASES = [
    *[(base, method, True) for base in ("logistic", "tree") for method in ("sigmoid", "isotonic")],
    ("logistic", "isotonic", False),
    ("tree", "sigmoid", False),
    ("linear-svc", "isotonic", True),
    ("sgd-hinge", "sigmoid", True),
    ("forest", "sigmoid", True),
    ("lightgbm", "isotonic", True),
    ("gradient-boosting", "sigmoid", True),
    ("hist-gradient-boosting", "isotonic", True),
]


@pytest.mark.parametrize(
    ("base", "method", "ensemble"),
    [
        pytest.param(b, m, e, id=f"{b}-{m}-{'ensemble' if e else 'single'}")
        for b, m, e in CALIBRATION_CASES
    ],
)
def test_calibrated_binary_parity(data, base: str, method: str, ensemble: bool) -> None:
    make, response = BASES[base]
    cal = CalibratedClassifierCV(make(), method=method, cv=2, ensemble=ensemble)
    model = _fit(cal, data, "binary")
    fitted = model[-1]
    assert len(fitted.calibrated_classifiers_) == (2 if ensemble else 1)
    assert hasattr(fitted.calibrated_classifiers_[0].estimator, "decision_function") == (
        response == "decision_function"
    )
    holdout = data["holdout"]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))


@pytest.mark.parametrize(
    ("make", "method"),
    [
        pytest.param(lambda: LogisticRegression(max_iter=1000), "sigmoid", id="logistic-sigmoid"),
        pytest.param(lambda: LinearSVC(max_iter=5000), "isotonic", id="linear-svc-ovr-isotonic"),
        pytest.param(
            lambda: DecisionTreeClassifier(max_depth=4, random_state=SEED),
            "isotonic",
            id="tree-isotonic",
        ),
    ],
)
def test_calibrated_multiclass_parity(data, make, method: str) -> None:
    # One calibrator per class over the base's per-class response, normalised over classes:
    # this also makes a multiclass LinearSVC a probability model.
    model = _fit(CalibratedClassifierCV(make(), method=method, cv=2), data, "multiclass")
    holdout = data["holdout"]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))
    assert set(model.predict(holdout)) == set(MULTI_LABELS)


def test_isotonic_over_a_tree_hits_thresholds_exactly(data) -> None:
    # A tree's probabilities are a few leaf values, and the isotonic thresholds are those same
    # values: np.interp's "x equals a threshold" branch is what holdout rows exercise here.
    cal = CalibratedClassifierCV(
        DecisionTreeClassifier(max_depth=3, random_state=SEED), method="isotonic", cv=3
    )
    model = _fit(cal, data, "binary")
    holdout = data["holdout"]
    features = model[0].transform(holdout)
    for cc in model[-1].calibrated_classifiers_:
        response = cc.estimator.predict_proba(features)[:, 1]
        assert np.isin(response, cc.calibrators[0].X_thresholds_).mean() > 0.5
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))


def test_calibrated_pipeline_base_and_frozen_estimator(data) -> None:
    holdout = data["holdout"]
    # The whole pipeline is the base: each fold fits its own imputer, scaler and encoder.
    pipe = Pipeline([("prep", _prep()), ("m", LogisticRegression(max_iter=1000))])
    outer = CalibratedClassifierCV(pipe, method="isotonic", cv=3).fit(data["train"], data["binary"])
    report = check_parity(outer, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))
    # A prefit model calibrated on held-out data (FrozenEstimator, the cv="prefit" successor).
    prefit = Pipeline([("prep", _prep()), ("m", LinearSVC())]).fit(
        data["train"].iloc[:600], data["binary"][:600]
    )
    frozen = CalibratedClassifierCV(FrozenEstimator(prefit), method="sigmoid").fit(
        data["train"].iloc[600:], data["binary"][600:]
    )
    report = check_parity(frozen, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))


def test_calibrated_hist_gradient_boosting_multiclass(data) -> None:
    # One raw margin per class from HistGradientBoosting, one isotonic calibrator each.
    base = HistGradientBoostingClassifier(max_iter=10, random_state=SEED)
    model = _fit(CalibratedClassifierCV(base, method="isotonic", cv=2), data, "multiclass")
    report = check_parity(model, _con(), data["holdout"], tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(data["holdout"]))


def test_calibrated_base_without_compilable_margin_is_refused(data) -> None:
    # An RBF SVC has a decision_function (so that is what was calibrated) but no SQL form.
    model = _fit(CalibratedClassifierCV(SVC(), cv=2), data, "binary")
    with pytest.raises(UnsupportedError, match="over SVC.*decision_function"):
        to_sql(model, "t")


# -- preprocessing on its own: SQL columns equal to transform() bit for bit ------------------


def _step_sql(step, rows: list[dict]) -> np.ndarray:
    """Each output column of a fitted step, computed by the compiled SQL, (rows, columns)."""
    names = [str(n) for n in step.feature_names_in_]
    cols = transform(step, [(n, ast.ColumnRef(n)) for n in names], "test")
    # The multiclass layout is only a way to render every column in one SELECT (score_<j>).
    exprs = tuple(ast.as_double(e) for _, e in cols)
    assembled = Assembled(tuple(names), None, "multiclass", tuple(range(len(exprs))), exprs)
    sql = SqlEmitter("duckdb").render(assembled, "t", "k")
    con = _con()
    con.register("t", arrow_rows([{**r, "k": i} for i, r in enumerate(rows)], TYPES, "k"))
    table = con.execute(sql).fetch_arrow_table()
    con.unregister("t")
    out = np.full((len(rows), len(cols)), np.nan)
    keys = table.column("k").to_numpy()
    for j in range(len(cols)):
        values = table.column(f"score_{j}").to_pylist()
        out[keys, j] = [math.nan if v is None else v for v in values]
    return out


def _step_rows(data: dict) -> list[dict]:
    holdout = data["holdout"]
    recs = [
        {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in holdout.to_dict("records")
    ]
    # transform() refuses infinities, so the edge rows here stop at the finite extremes.
    edge = [
        r
        for r in _edge_rows(holdout)
        if not any(isinstance(v, float) and math.isinf(v) for v in r.values())
    ]
    base = _row(holdout, 2)
    big = [{**base, c: v} for c in NUMERIC for v in (1e12, -1e12, 1e300, -1e300, 5e-324)]
    return recs + edge + big


def _assert_step_parity(step, data: dict) -> np.ndarray:
    rows = _step_rows(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # handle_unknown="warn" does warn
        expected = step.transform(python_rows(rows, TYPES)[list(step.feature_names_in_)])
    expected = np.asarray(expected.toarray() if hasattr(expected, "toarray") else expected)
    got = _step_sql(step, rows)
    assert got.shape == expected.shape
    bad = ~((got == expected) | (np.isnan(got) & pd.isna(expected)))
    assert not bad.any(), [(rows[i], got[i], expected[i]) for i in np.flatnonzero(bad.any(1))[:3]]
    return expected


NUMERIC_STEPS = [
    ("impute-mean", lambda: SimpleImputer(strategy="mean")),
    ("impute-median", lambda: SimpleImputer(strategy="median")),
    ("impute-most-frequent", lambda: SimpleImputer(strategy="most_frequent")),
    ("impute-constant", lambda: SimpleImputer(strategy="constant", fill_value=-7.5)),
    ("impute-indicator", lambda: SimpleImputer(add_indicator=True)),
    ("standard", lambda: StandardScaler()),
    ("standard-no-mean", lambda: StandardScaler(with_mean=False)),
    ("minmax", lambda: MinMaxScaler()),
    ("minmax-range-clip", lambda: MinMaxScaler(feature_range=(-2.0, 3.0), clip=True)),
    ("robust", lambda: RobustScaler()),
    ("robust-no-centering", lambda: RobustScaler(with_centering=False, quantile_range=(10, 90))),
    ("robust-no-scaling", lambda: RobustScaler(with_scaling=False)),
    ("maxabs", lambda: MaxAbsScaler()),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in NUMERIC_STEPS])
def test_numeric_step_equals_transform(data, make) -> None:
    step = make().fit(data["train"][NUMERIC + ["tier"]])
    out = _assert_step_parity(step, data)
    assert np.isnan(out).any() == (not isinstance(step, SimpleImputer))  # NaN flows through


OK_UNKNOWN = {"handle_unknown": "use_encoded_value", "unknown_value": -1}
CATEGORICAL_STEPS = [
    ("impute-most-frequent", lambda: SimpleImputer(strategy="most_frequent")),
    ("impute-constant", lambda: SimpleImputer(strategy="constant", fill_value="missing")),
    ("onehot-ignore", lambda: OneHotEncoder(handle_unknown="ignore")),
    ("onehot-drop-first", lambda: OneHotEncoder(handle_unknown="ignore", drop="first")),
    (
        "onehot-infrequent-min-count",
        lambda: OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=60),
    ),
    (
        "onehot-infrequent-max-categories",
        lambda: OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=4),
    ),
    (
        "onehot-infrequent-share-drop",
        lambda: OneHotEncoder(
            handle_unknown="infrequent_if_exist", min_frequency=0.05, drop="first"
        ),
    ),
    (
        "onehot-ignore-with-infrequent",
        lambda: OneHotEncoder(handle_unknown="ignore", max_categories=3),
    ),
    ("onehot-warn", lambda: OneHotEncoder(handle_unknown="warn", min_frequency=60)),
    (
        "ordinal",
        lambda: OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
        ),
    ),
    (
        "ordinal-infrequent",
        lambda: OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=99,
            encoded_missing_value=-1,
            max_categories=4,
        ),
    ),
    # NaN outputs are NULL in SQL: the default encoded_missing_value (NaN, NaN seen at fit) ...
    ("ordinal-nan-missing", lambda: OrdinalEncoder(**OK_UNKNOWN)),
    # ... and unknown_value=np.nan (missing and unseen levels both NaN).
    (
        "ordinal-nan-unknown",
        lambda: OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
    ),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in CATEGORICAL_STEPS])
def test_categorical_step_equals_transform(data, make) -> None:
    # channel (strings) and tier (numbers), both with NaN seen at fit.
    step = make()
    if isinstance(step, SimpleImputer):
        # A string imputer's output is strings: follow it with an encoder to read it back.
        step = Pipeline([("imp", step), ("enc", OneHotEncoder(handle_unknown="ignore"))])
        step.fit(data["train"][["channel"]])
    else:
        step.fit(data["train"][["channel", "tier"]])
    _assert_step_parity(step, data)


def test_encoders_with_missing_unseen_at_fit(data) -> None:
    # NULL is then an unseen level: all zeros (ignore), the infrequent column, or unknown_value.
    train = data["train"][["channel", "tier"]].dropna()
    for step in [
        OneHotEncoder(handle_unknown="ignore"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=60),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    ]:
        _assert_step_parity(step.fit(train), data)


def test_infrequent_levels_and_unseen_go_to_the_infrequent_column(data) -> None:
    step = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=60)
    step.fit(data["train"][["channel", "tier"]])
    assert {"partner", "radio"} <= set(step.infrequent_categories_[0])
    names = list(step.get_feature_names_out())
    col = names.index("channel_infrequent_sklearn")
    rows = [{"channel": v, "tier": 1.0} for v in ("radio", "partner", "never seen", "web")]
    got = _step_sql(step, rows)
    assert got[:, col].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_imputer_drops_a_column_that_was_all_missing(data) -> None:
    train = data["train"][NUMERIC].assign(x2=np.nan)
    step = SimpleImputer(strategy="mean").fit(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = _assert_step_parity(step, data)
    assert out.shape[1] == 2
    kept = SimpleImputer(strategy="mean", keep_empty_features=True).fit(train)
    assert _assert_step_parity(kept, data).shape[1] == 3


@pytest.mark.parametrize("remainder", ["drop", "passthrough", "scaled"])
def test_column_transformer_remainder(data, remainder: str) -> None:
    rem = MinMaxScaler(clip=True) if remainder == "scaled" else remainder
    ct = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["x1", "x2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ],
        remainder=rem,
    )
    # x3 and tier are the remainder; tier has NaN, which passes through as NULL.
    ct.fit(data["train"])
    out = _assert_step_parity(ct, data)
    width = 2 + len(ct.named_transformers_["cat"].categories_[0])
    assert out.shape[1] == width + (0 if remainder == "drop" else 2)


def test_column_transformer_selection_and_weights(data) -> None:
    # slice("x1", "x2") is label-based and includes x2 (pandas .loc); [3] is tier by position;
    # x3 is the remainder. Weights multiply a transformer's outputs, the remainder's included.
    ct = ColumnTransformer(
        [("scaled", RobustScaler(), slice("x1", "x2")), ("tier", MaxAbsScaler(), [3])],
        remainder="passthrough",
        transformer_weights={"scaled": 2.5, "remainder": 0.1},
    ).fit(data["train"][[*NUMERIC, "tier"]])
    out = _assert_step_parity(ct, data)
    assert out.shape[1] == 4


# -- whole pipelines with the new steps, through the gate -----------------------------------

PIPELINES = [
    # (id, preprocessing, task)
    (
        "minmax-clip-infrequent",
        lambda: _prep(
            MinMaxScaler(feature_range=(-1, 1), clip=True),
            OneHotEncoder(
                handle_unknown="infrequent_if_exist", min_frequency=60, sparse_output=False
            ),
        ),
        "binary",
    ),
    (
        "robust-ordinal",
        lambda: _prep(
            RobustScaler(), OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        ),
        "multiclass",
    ),
    (
        "maxabs-max-categories",
        lambda: _prep(
            MaxAbsScaler(), OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=3)
        ),
        "multiclass",
    ),
]


@pytest.mark.parametrize(
    ("make_prep", "task"), [pytest.param(m, t, id=f"{i}-{t}") for i, m, t in PIPELINES]
)
def test_pipeline_with_new_steps_parity(data, make_prep, task: str) -> None:
    model = _fit(LogisticRegression(max_iter=1000), data, task, prep=make_prep())
    holdout = data["holdout"]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))


def _nan_ordinal_prep(unknown_value: float, impute: bool = False):
    """Categories ordinal-encoded with NaN outputs (missing, and unseen when unknown_value is
    NaN), numbers raw: the shape a NaN-aware model is fed; `impute` fills the NaNs after."""
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=unknown_value)
    columns = ColumnTransformer(
        [("cat", encoder, ["channel", "tier"]), ("num", "passthrough", NUMERIC)]
    )
    return Pipeline([("cols", columns), ("imp", SimpleImputer())]) if impute else columns


NAN_AWARE_MODELS = [
    # (id, model, impute the encoder's NaNs before the model)
    ("hist-gb", lambda: HistGradientBoostingClassifier(max_iter=20, random_state=SEED), False),
    ("random-forest", lambda: RandomForestClassifier(n_estimators=8, random_state=SEED), False),
    (
        "lightgbm",
        lambda: LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1, random_state=SEED),
        False,
    ),
    ("xgboost", lambda: XGBClassifier(n_estimators=15, max_depth=3, random_state=SEED), False),
    ("impute-then-logistic", lambda: LogisticRegression(max_iter=1000), True),
]


@pytest.mark.parametrize("unknown_value", [-1, np.nan], ids=["unknown-1", "unknown-nan"])
@pytest.mark.parametrize(
    ("make", "impute"), [pytest.param(m, f, id=i) for i, m, f in NAN_AWARE_MODELS]
)
def test_ordinal_nan_outputs_route_as_missing(data, make, impute: bool, unknown_value) -> None:
    """The library's NaN from the encoder and the SQL's NULL reach the model alike: trees take
    their missing branch, an imputer fills them. Holdout, NULL, unseen and hostile levels."""
    model = _fit(make(), data, "binary", prep=_nan_ordinal_prep(unknown_value, impute))
    holdout = data["holdout"]
    report = check_parity(model, _con(), holdout)
    assert report.passed, report.worst_row
    assert_evaluator(report)
    assert report.max_abs_diff <= max(PARITY_TOLERANCE, assemble(model).tolerance or 0.0)
    assert report.rows_checked > len(holdout)


# -- refusals --------------------------------------------------------------------------------


def _on_channel(*steps) -> Pipeline:
    return Pipeline([*[(f"s{i}", s) for i, s in enumerate(steps)], ("m", LogisticRegression())])


def _fill(value):
    return SimpleImputer(strategy="constant", fill_value=value)


REFUSALS = [
    # (id, pipeline over the channel column, message pattern)
    (
        "onehot-error",
        lambda: _on_channel(_fill("missing"), OneHotEncoder()),
        r"OneHotEncoder\(handle_unknown='error'\)",
    ),
    (
        "ordinal-error",
        lambda: _on_channel(_fill("missing"), OrdinalEncoder()),
        r"OrdinalEncoder\(handle_unknown='error'\)",
    ),
    (
        "imputer-indicator-strings",
        lambda: _on_channel(
            SimpleImputer(strategy="most_frequent", add_indicator=True),
            OneHotEncoder(handle_unknown="ignore"),
        ),
        r"add_indicator=True\) on string columns",
    ),
]


@pytest.mark.parametrize(("make", "match"), [pytest.param(m, r, id=i) for i, m, r in REFUSALS])
def test_unreproducible_steps_are_refused(data, make, match: str) -> None:
    model = make().fit(data["train"][["channel"]], data["binary"])
    with pytest.raises(UnsupportedError, match=match):
        to_sql(model, "t")


def test_imputer_of_none_is_refused(data) -> None:
    # Fitted on None, it leaves the NaN that a warehouse NULL becomes in Python alone (and
    # scikit-learn then refuses the row); the SQL would fill it.
    train = data["train"][["channel"]].astype(object)
    train = train.where(train.notna(), None)
    model = _on_channel(
        SimpleImputer(missing_values=None, strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore"),
    ).fit(train, data["binary"])
    with pytest.raises(UnsupportedError, match="missing_values=None"):
        to_sql(model, "t")


# -- PostgreSQL (runs where MLSM_PG_DSN is set, as in CI) ------------------------------------

POSTGRES_CASES = [
    # The shapes PostgreSQL could reject where DuckDB is lenient: exp() of large margins in
    # the one-vs-rest expit, the guarded divisions by a class sum, long isotonic CASEs.
    ("logistic-ovr", lambda: LogisticRegression(multi_class="ovr"), None),
    ("sgd-huber-multi", lambda: SGDClassifier(loss="modified_huber", random_state=SEED), None),
    (
        "calibrated-isotonic",
        lambda: CalibratedClassifierCV(LinearSVC(), method="isotonic", cv=2),
        None,
    ),
    ("robust-ordinal", lambda: LogisticRegression(max_iter=1000), PIPELINES[1][1]),
    ("minmax-clip-infrequent", lambda: LogisticRegression(max_iter=1000), PIPELINES[0][1]),
    # NULL for the encoder's NaN: a typed NULL in every CASE branch PostgreSQL type-checks.
    ("ordinal-nan-hist-gb", NAN_AWARE_MODELS[0][1], lambda: _nan_ordinal_prep(np.nan)),
]


@pytest.mark.parametrize(
    ("make", "make_prep"), [pytest.param(m, p, id=i) for i, m, p in POSTGRES_CASES]
)
def test_postgres_parity(data, make, make_prep, pg_engine) -> None:
    model = _fit(make(), data, "multiclass", prep=make_prep() if make_prep else None)
    holdout = data["holdout"]
    report = check_parity(model, pg_engine, holdout, tolerance=PARITY_TOLERANCE)
    _assert_gate(report, len(holdout))

"""LightGBM compiled to SQL, run in DuckDB and compared with LightGBM's own predict_proba /
predict: every missing type (use_missing x zero_as_missing, default direction both ways), the
zero band LightGBM reads as 0.0, categorical splits on integer codes and on pandas `category`
columns, multiclass (softmax and one-vs-all), exp / sigmoid / sqrt links, early stopping,
random-forest averaging, and the models the compiler refuses."""

from __future__ import annotations

import duckdb
import lightgbm
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor

import mlsm_py.compile.assemblers.lightgbm as lgbm_asm
from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.assemblers.lightgbm import ZERO_THRESHOLD, pandas_categories
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.errors import UnsupportedError
from mlsm_py.frames import arrow_rows, python_rows
from mlsm_py.parity.gate import (
    ROW_KEY,
    ParityReport,
    adversarial_rows,
    check_parity,
    compare,
    input_types,
    sql_outputs,
)
from tests.helpers import zero_probes

# The SQL repeats LightGBM's float64 path: the same comparisons, the trees summed in the same
# order; only the algebraic form of the sigmoid / softmax differs, worth a few ulps (~1e-16).
# One misrouted node moves a score by a whole leaf difference, orders of magnitude above 1e-9.
PARITY_TOLERANCE = 1e-9

SEED = 0
N_ROWS = 2400
N_HOLDOUT = 400
NUMERIC = ["x1", "x2", "x3"]
LEVELS = ["web", "email", "ads", "referral", "event"]
LABELS = np.array(["cold", "warm", "hot"], dtype=object)

KW = {
    "n_estimators": 20,
    "num_leaves": 15,
    "max_depth": 5,
    "learning_rate": 0.2,
    "random_state": SEED,
    "n_jobs": 1,
    "verbose": -1,
}

ZERO_PROBES = zero_probes()

# Category codes as LightGBM reads them: truncated toward zero, below 0 or outside int range
# or NaN is "not in the set".
CODE_PROBES = [
    None,
    float("nan"),
    -0.0,
    -0.5,
    -0.999,
    -1.0,
    -1.5,
    -3.0,
    0.999,
    2.5,
    2.999,
    7.0,
    7.5,
    8.0,
    50.0,
    2.0**31,
    2.0**32 + 2.0,
    1e10,
    -1e10,
    float("inf"),
]

pytestmark = [
    # LightGBM warns on the negative / huge category codes the gate and the probes feed it.
    pytest.mark.filterwarnings("ignore::UserWarning"),
    # The gate's float32 neighbours of a +-1e300 value overflow to inf; that is the point.
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
]


# -- data ------------------------------------------------------------------------------------


def _dataset(seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Leads with a signal that depends on zeros and on missingness, so that LightGBM learns
    splits at the zero band and default directions both ways.

    x1: signed, |x1| < 0.3 set to exact 0, 3% inside the zero band (+-1e-36, +-1.00e-35,
    1e-320), 10% NaN; x2: non-negative, 20% exact zeros, 8% NaN; x3: small signed integers,
    no NaN; k: integer codes 0..7, 8% NaN; channel: 5 string levels, 7% NaN.
    Returns (frame, regression y, binary y, 3-class labels).
    """
    rng = np.random.default_rng(seed)
    n = N_ROWS
    x1 = rng.normal(size=n)
    x1[np.abs(x1) < 0.3] = 0.0
    band = rng.uniform(size=n) < 0.03
    x1[band] = rng.choice([1e-36, -1e-36, ZERO_THRESHOLD, -ZERO_THRESHOLD, 1e-320], band.sum())
    x2 = rng.exponential(1.0, size=n)
    x2[rng.uniform(size=n) < 0.2] = 0.0
    x3 = rng.integers(-3, 4, size=n).astype("float64")
    k = rng.integers(0, 8, size=n).astype("float64")
    channel = rng.choice(LEVELS, size=n).astype(object)
    nan1, nan2 = rng.uniform(size=n) < 0.10, rng.uniform(size=n) < 0.08
    nan_k, nan_c = rng.uniform(size=n) < 0.08, rng.uniform(size=n) < 0.07
    k_effect = np.array([1.5, -1.0, 0.2, 1.2, -0.8, 0.0, -1.5, 0.9])[k.astype(int)]
    c_effect = pd.Series(channel).map(
        {"web": 0.0, "email": 0.8, "ads": -0.6, "referral": 1.5, "event": -1.2}
    )
    signal = (
        np.sin(2.0 * x1)
        + 0.5 * x2
        - 0.3 * x3
        + 1.2 * nan1
        - 1.0 * nan2
        + 0.8 * (x1 == 0)
        - 0.6 * (x2 == 0)
        + np.where(nan_k, 0.7, k_effect)
        + np.where(nan_c, -0.4, c_effect.to_numpy())
    )
    x1[nan1], x2[nan2], k[nan_k] = np.nan, np.nan, np.nan
    channel[nan_c] = np.nan
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "k": k, "channel": channel})
    y_reg = signal + rng.normal(scale=0.3, size=n)
    y_bin = (signal + rng.logistic(scale=0.5, size=n) > np.median(signal)).astype(int)
    cuts = np.quantile(signal, [1 / 3, 2 / 3])
    y_multi = LABELS[np.digitize(signal + rng.logistic(scale=0.3, size=n), cuts)]
    return df, y_reg, y_bin, y_multi


@pytest.fixture(scope="module")
def data() -> dict:
    df, y_reg, y_bin, y_multi = _dataset()
    train, hold = slice(0, N_ROWS - N_HOLDOUT), slice(N_ROWS - N_HOLDOUT, N_ROWS)
    return {
        "train": df.iloc[train].reset_index(drop=True),
        "holdout": df.iloc[hold].reset_index(drop=True),
        "regressor": y_reg[train],
        "classifier": y_bin[train],
        "multiclass": y_multi[train],
    }


def _with_category_dtype(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(channel=pd.Categorical(frame["channel"], categories=LEVELS))


def _con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _first_row(frame: pd.DataFrame) -> dict:
    return {k: (None if pd.isna(v) else v) for k, v in frame.iloc[0].items()}


def _probe_rows(frame: pd.DataFrame, columns: list[str], values: list) -> list[dict]:
    """The first holdout row with one column at a time set to each value."""
    first = _first_row(frame)
    return [{**first, col: v} for col in columns for v in values]


def _assert_parity(report: ParityReport, n_holdout: int) -> None:
    assert report.max_abs_diff <= PARITY_TOLERANCE, report.worst_row
    assert report.passed
    # The gate added adversarial rows on top of the holdout, and the library scored them.
    assert report.rows_checked > n_holdout, report


def _nodes(model) -> list[dict]:
    out: list[dict] = []

    def walk(node: dict) -> None:
        if "leaf_value" in node:
            return
        out.append(node)
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in model.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return out


# -- missing types and the zero band ---------------------------------------------------------

# (zero_as_missing, use_missing) -> missing type of the splits on x1 (which has NaN and zeros)
MISSING_CASES = [
    (False, True, "NaN"),
    (False, False, "None"),
    (True, True, "Zero"),
    (True, False, "None"),
]


@pytest.mark.parametrize(
    ("zero_as_missing", "use_missing", "expected"),
    [pytest.param(z, u, e, id=f"zero_as_missing={z}-use_missing={u}") for z, u, e in MISSING_CASES],
)
@pytest.mark.parametrize("cls", [LGBMClassifier, LGBMRegressor], ids=["clf", "reg"])
def test_missing_types_parity(data, cls, zero_as_missing, use_missing, expected) -> None:
    train = data["train"][NUMERIC]
    task = "classifier" if cls is LGBMClassifier else "regressor"
    params = {"zero_as_missing": zero_as_missing, "use_missing": use_missing}
    model = cls(**KW, **params).fit(train, data[task])
    x1_nodes = [n for n in _nodes(model) if n["split_feature"] == 0]
    assert {n["missing_type"] for n in x1_nodes} == {expected}
    if expected != "None":
        # Missing values go left at some splits and right at others.
        assert {n["default_left"] for n in x1_nodes} == {True, False}
    # Splits sit at the edges of the zero band, where reading |x| <= 1e-35 as 0.0 matters.
    thresholds = {float(n["threshold"]) for n in _nodes(model)}
    assert {ZERO_THRESHOLD, -ZERO_THRESHOLD} <= thresholds

    holdout = data["holdout"][NUMERIC]
    assert (holdout == 0.0).any().all() and holdout[["x1", "x2"]].isna().any().all()
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        extra_rows=_probe_rows(holdout, NUMERIC, [None, *ZERO_PROBES]),
    )
    _assert_parity(report, len(holdout))


def test_zero_band_is_what_the_parity_catches(data, monkeypatch) -> None:
    # Compare the raw value (ignoring LightGBM's |x| <= 1e-35 -> 0.0) and the gate fails.
    train = data["train"][NUMERIC]
    model = LGBMRegressor(**KW, use_missing=False).fit(train, data["regressor"])
    holdout = data["holdout"][NUMERIC]
    extra = _probe_rows(holdout, NUMERIC, ZERO_PROBES)
    assert check_parity(model, _con(), holdout, extra_rows=extra).passed

    def naive(x, threshold):
        return lgbm_asm.ast.CompExpr(x, lgbm_asm.ast.num(threshold), lgbm_asm.ast.CompOpType.LTE)

    monkeypatch.setattr(lgbm_asm, "_at_most", naive)
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE, extra_rows=extra)
    assert not report.passed
    worst = report.worst_row
    assert any(0 < abs(worst[c]) <= ZERO_THRESHOLD for c in NUMERIC if worst[c] is not None)


def test_threshold_the_dump_clamps_to_1e300_is_infinity(monkeypatch) -> None:
    """A split that sends every non-missing value left has threshold +inf; the JSON dump
    writes it as 1e300, and +inf <= 1e300 is false. The SQL uses the booster's +inf."""
    rng = np.random.default_rng(SEED)
    z, w = rng.normal(size=600), rng.normal(size=600)
    missing = rng.uniform(size=600) < 0.2
    z[missing] = np.nan
    frame = pd.DataFrame({"z": z, "w": w})
    y = 3.0 * missing + w + rng.normal(scale=0.1, size=600)
    model = LGBMRegressor(**{**KW, "n_estimators": 3, "num_leaves": 4}).fit(frame, y)
    assert any(float(n["threshold"]) == 1e300 for n in _nodes(model))
    rows = [{"z": v, "w": 0.5} for v in (float("inf"), 1e300, 2e300, 5.0, None)]
    report = check_parity(model, _con(), frame, tolerance=PARITY_TOLERANCE, extra_rows=rows)
    _assert_parity(report, len(frame))

    monkeypatch.setattr(lgbm_asm, "_restore_clamped_thresholds", lambda booster, dump: None)
    report = check_parity(model, _con(), frame, tolerance=PARITY_TOLERANCE, extra_rows=rows)
    assert not report.passed
    assert report.worst_row["z"] in ("inf", 2e300)


# -- categorical splits on integer codes -----------------------------------------------------

CAT_KW = {**KW, "min_data_per_group": 20, "cat_smooth": 5.0, "max_cat_to_onehot": 2}


def _sized(params: dict, task: str) -> dict:
    # A multiclass model has one tree per class per iteration: fewer iterations keep the
    # SQL (and the test) as small as the binary ones.
    return {**params, "n_estimators": 8} if task == "multiclass" else params


def _categorical_nodes(model) -> list[dict]:
    return [n for n in _nodes(model) if n["decision_type"] == "=="]


@pytest.mark.parametrize("use_missing", [True, False], ids=["missing-NaN", "missing-None"])
@pytest.mark.parametrize("cls", [LGBMClassifier, LGBMRegressor], ids=["clf", "reg"])
def test_integer_coded_categorical_parity(data, cls, use_missing) -> None:
    cols = [*NUMERIC, "k"]
    train = data["train"][cols]
    task = "classifier" if cls is LGBMClassifier else "regressor"
    model = cls(**CAT_KW, use_missing=use_missing).fit(train, data[task], categorical_feature=["k"])
    cat_nodes = _categorical_nodes(model)
    assert {n["missing_type"] for n in cat_nodes} == {"NaN" if use_missing else "None"}
    sets = [{int(c) for c in str(n["threshold"]).split("||")} for n in cat_nodes]
    # Category 0 (where -1 < x < 1 truncates to, and where a NaN read as 0.0 would land)
    # and sets of several categories both occur.
    assert any(0 in s for s in sets) and any(len(s) > 1 for s in sets)

    holdout = data["holdout"][cols]
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        extra_rows=_probe_rows(holdout, ["k"], [*CODE_PROBES, *ZERO_PROBES]),
    )
    _assert_parity(report, len(holdout))


def test_category_codes_truncate_toward_zero_like_lightgbm(data, monkeypatch) -> None:
    """LightGBM casts a category value to int: -0.5 is category 0 and 2.7 is category 2. An
    exact-match reading of the codes disagrees with the library on those rows."""
    cols = [*NUMERIC, "k"]
    model = LGBMRegressor(**CAT_KW).fit(
        data["train"][cols], data["regressor"], categorical_feature=["k"]
    )
    holdout = data["holdout"][cols]
    extra = _probe_rows(holdout, ["k"], CODE_PROBES)
    assert check_parity(model, _con(), holdout, extra_rows=extra).passed

    def exact(x, cats):
        test = None
        for c in cats:
            eq = lgbm_asm.ast.CompExpr(x, lgbm_asm.ast.num(c), lgbm_asm.ast.CompOpType.EQ)
            test = eq if test is None else lgbm_asm.ast.OrExpr(test, eq)
        return test

    monkeypatch.setattr(lgbm_asm, "_categorical_test", exact)
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE, extra_rows=extra)
    assert not report.passed
    assert report.worst_row["k"] != int(report.worst_row["k"])


# -- categorical splits on pandas category columns -------------------------------------------


def _library_scores(model, frame: pd.DataFrame, task: str) -> np.ndarray:
    if task == "classifier":
        return model.predict_proba(frame)[:, 1].reshape(-1, 1)
    if task == "multiclass":
        index = {c: i for i, c in enumerate(model.classes_)}
        predicted = [float(index[c]) for c in model.predict(frame)]
        return np.column_stack([model.predict_proba(frame), predicted])
    return model.predict(frame).reshape(-1, 1)


HARNESS_KEY = "row_id"


def _category_parity(model, holdout: pd.DataFrame, extra_rows: list[dict]) -> ParityReport:
    """The gate's rows (holdout + adversarial, hostile and unseen levels included) and its
    comparison, with the library fed the string columns as pandas `category` columns in the
    training levels: LightGBM refuses the object columns mlsm_py.frames hands it."""
    assembled = assemble(model)
    types = input_types(assembled)
    assert types["channel"] == "string"
    rows = [
        {
            n: (None if pd.isna(v) else (str(v) if types[n] == "string" else float(v)))
            for n, v in rec.items()
        }
        for rec in holdout[list(types)].to_dict("records")
    ]
    rows += adversarial_rows(assembled, rows[:5]) + extra_rows
    for i, row in enumerate(rows):
        row[HARNESS_KEY] = i
    frame = python_rows(rows, types)
    categories = pandas_categories(model)
    assert list(categories) == [
        c for c in holdout.columns if isinstance(holdout[c].dtype, pd.CategoricalDtype)
    ]
    for name, levels in categories.items():
        # Levels outside the training ones become NaN, as LightGBM's set_categories does.
        frame[name] = pd.Categorical(frame[name], categories=levels)
    expected = _library_scores(model, frame, assembled.task)
    con = _con()
    con.register("rows", arrow_rows(rows, types, HARNESS_KEY))
    sql = SqlEmitter("duckdb").render(assembled, "rows", HARNESS_KEY)
    table = con.execute(sql).fetch_arrow_table()
    # sql_outputs reads the row numbers from the gate's own key column.
    table = table.rename_columns([ROW_KEY if c == HARNESS_KEY else c for c in table.column_names])
    got = sql_outputs(table, assembled, len(rows))
    return compare(rows, expected, got, PARITY_TOLERANCE, [n for n, _ in assembled.outputs()])


LEVEL_PROBES = [None, *LEVELS, "unseen", "", "WEB", "web "]


@pytest.mark.parametrize("task", ["classifier", "regressor", "multiclass"])
def test_pandas_category_column_parity(data, task) -> None:
    cols = [*NUMERIC, "channel"]
    train = _with_category_dtype(data["train"][cols])
    cls = LGBMRegressor if task == "regressor" else LGBMClassifier
    model = cls(**_sized(CAT_KW, task)).fit(train, data[task])
    assert model.booster_.pandas_categorical == [LEVELS]
    assert _categorical_nodes(model)
    holdout = _with_category_dtype(data["holdout"][cols])
    report = _category_parity(model, holdout, _probe_rows(holdout, ["channel"], LEVEL_PROBES))
    _assert_parity(report, len(holdout))


def test_pandas_category_and_integer_codes_together_parity(data) -> None:
    # Both kinds in one model: the integer column is matched to no level list because its
    # codes run past the five levels.
    cols = [*NUMERIC, "k", "channel"]
    train = _with_category_dtype(data["train"][cols])
    model = LGBMClassifier(**CAT_KW).fit(
        train, data["classifier"], categorical_feature=["k", "channel"]
    )
    split_on = {n["split_feature"] for n in _categorical_nodes(model)}
    assert split_on == {3, 4}
    holdout = _with_category_dtype(data["holdout"][cols])
    extra = _probe_rows(holdout, ["channel"], LEVEL_PROBES) + _probe_rows(
        holdout, ["k"], CODE_PROBES
    )
    report = _category_parity(model, holdout, extra)
    _assert_parity(report, len(holdout))


def test_gate_checks_a_model_fitted_on_pandas_category_columns(data) -> None:
    cols = [*NUMERIC, "channel"]
    model = LGBMClassifier(**CAT_KW).fit(
        _with_category_dtype(data["train"][cols]), data["classifier"]
    )
    holdout = data["holdout"][cols]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


def test_ordered_or_numeric_pandas_categories_are_refused(data) -> None:
    cols = [*NUMERIC, "channel"]
    ordered = data["train"][cols].assign(
        channel=pd.Categorical(data["train"]["channel"], categories=LEVELS, ordered=True)
    )
    model = LGBMClassifier(**CAT_KW).fit(ordered, data["classifier"])
    with pytest.raises(UnsupportedError, match="pandas category column"):
        assemble(model)

    numeric = data["train"][[*NUMERIC, "k"]].assign(k=data["train"]["k"].astype("category"))
    model = LGBMClassifier(**CAT_KW).fit(numeric, data["classifier"])
    with pytest.raises(UnsupportedError, match="non-string levels"):
        assemble(model)


def test_category_columns_that_cannot_be_told_apart_are_refused(data) -> None:
    cols = [*NUMERIC, "k", "channel"]
    train = _with_category_dtype(data["train"][cols])
    # channel left out of categorical_feature: LightGBM splits on its codes as numbers.
    model = LGBMClassifier(**CAT_KW).fit(train, data["classifier"], categorical_feature=["k"])
    with pytest.raises(UnsupportedError, match="cannot be matched"):
        assemble(model)
    # Integer codes 0..4 fit the five channel levels as well: which column was the
    # category one is ambiguous.
    train = train.assign(k=train["k"] % 5)
    model = LGBMClassifier(**CAT_KW).fit(
        train, data["classifier"], categorical_feature=["k", "channel"]
    )
    with pytest.raises(UnsupportedError, match="2 possible assignments"):
        assemble(model)


# -- multiclass ------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["multiclass", "multiclassova"])
def test_multiclass_parity(data, objective) -> None:
    cols = [*NUMERIC, "k"]
    model = LGBMClassifier(**_sized(CAT_KW, "multiclass"), objective=objective).fit(
        data["train"][cols], data["multiclass"], categorical_feature=["k"]
    )
    dump = model.booster_.dump_model()
    assert dump["num_tree_per_iteration"] == 3 and dump["objective"].startswith(objective)
    holdout = data["holdout"][cols]
    proba = model.predict_proba(holdout)
    if objective == "multiclassova":
        # One sigmoid per class, not normalised: rows do not sum to 1.
        assert np.abs(proba.sum(axis=1) - 1.0).max() > 0.01
    report = check_parity(
        model,
        _con(),
        holdout,
        tolerance=PARITY_TOLERANCE,
        extra_rows=_probe_rows(holdout, cols, [None, *ZERO_PROBES[:4]]),
    )
    _assert_parity(report, len(holdout))
    # Every class is predicted somewhere, so the argmax is exercised.
    assert set(model.predict(holdout)) == set(LABELS)


# -- objectives ------------------------------------------------------------------------------


def _positive(y: np.ndarray) -> np.ndarray:
    return np.exp(0.5 * (y - y.mean()))


REGRESSION_CASES = [
    # (id, params, target, the prediction is a link of the raw score)
    ("poisson", {"objective": "poisson"}, _positive, True),
    ("gamma", {"objective": "gamma"}, _positive, True),
    ("tweedie", {"objective": "tweedie", "tweedie_variance_power": 1.3}, _positive, True),
    ("sqrt", {"objective": "regression", "reg_sqrt": True}, lambda y: y, True),
    ("cross-entropy", {"objective": "cross_entropy"}, lambda y: 1 / (1 + np.exp(-y)), True),
    ("huber", {"objective": "huber"}, lambda y: y, False),
    ("quantile", {"objective": "quantile", "alpha": 0.8}, lambda y: y, False),
    ("l1", {"objective": "regression_l1"}, lambda y: y, False),
]


@pytest.mark.parametrize(
    ("params", "target", "linked"), [pytest.param(p, t, k, id=i) for i, p, t, k in REGRESSION_CASES]
)
def test_regression_objective_parity(data, params, target, linked) -> None:
    model = LGBMRegressor(**KW, **params).fit(data["train"][NUMERIC], target(data["regressor"]))
    holdout = data["holdout"][NUMERIC]
    raw = model.predict(holdout, raw_score=True)
    # Whether the SQL has to apply a link (exp, sigmoid, sign * square) or none.
    assert (np.abs(model.predict(holdout) - raw).max() > 0.01) == linked
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


@pytest.mark.parametrize(
    "params",
    [{"sigmoid": 0.7}, {"objective": "cross_entropy"}],
    ids=["binary-sigmoid-0.7", "cross-entropy"],
)
def test_binary_link_parity(data, params) -> None:
    model = LGBMClassifier(**KW, **params).fit(data["train"][NUMERIC], data["classifier"])
    holdout = data["holdout"][NUMERIC]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


# -- which trees: early stopping, random forest, dart ----------------------------------------


@pytest.mark.parametrize("task", ["classifier", "regressor", "multiclass"])
def test_early_stopping_parity(data, task) -> None:
    cols = [*NUMERIC, "k"]
    train, y = data["train"][cols], data[task]
    cls = LGBMRegressor if task == "regressor" else LGBMClassifier
    model = cls(**{**KW, "n_estimators": 100, "learning_rate": 0.5}).fit(
        train.iloc[:1400],
        y[:1400],
        eval_set=[(train.iloc[1400:], y[1400:])],
        callbacks=[lightgbm.early_stopping(5, verbose=False)],
    )
    # Stopped early; the scikit-learn wrapper keeps only the best iterations' trees.
    per_iteration = model.booster_.dump_model()["num_tree_per_iteration"]
    assert 0 < model.best_iteration_ == model.booster_.num_trees() // per_iteration < 100
    holdout = data["holdout"][cols]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


@pytest.mark.parametrize("task", ["classifier", "regressor", "multiclass"])
def test_best_iteration_below_the_tree_count_parity(data, task) -> None:
    # A booster that keeps trees past its best iteration (lgb.train(keep_training_booster=
    # True) leaves one so): predict / predict_proba use only the first best_iteration.
    cols = [*NUMERIC, "k"]
    cls = LGBMRegressor if task == "regressor" else LGBMClassifier
    model = cls(**_sized(KW, task)).fit(data["train"][cols], data[task])
    model.booster_.best_iteration = 5
    holdout = data["holdout"][cols]
    assert not np.array_equal(model.predict(holdout, num_iteration=-1), model.predict(holdout))
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


RF = {"boosting_type": "rf", "subsample": 0.7, "subsample_freq": 1, "colsample_bytree": 0.8}


@pytest.mark.parametrize("task", ["classifier", "regressor", "multiclass"])
@pytest.mark.parametrize("boosting", ["rf", "dart"])
def test_random_forest_and_dart_parity(data, task, boosting) -> None:
    params = {**KW, **(RF if boosting == "rf" else {"boosting_type": "dart"})}
    cls = LGBMRegressor if task == "regressor" else LGBMClassifier
    model = cls(**_sized(params, task)).fit(data["train"][NUMERIC], data[task])
    assert model.booster_.dump_model()["average_output"] == (boosting == "rf")
    holdout = data["holdout"][NUMERIC]
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


# -- refused ---------------------------------------------------------------------------------


def _custom_objective(y_true, y_pred):
    return y_pred - y_true, np.ones_like(y_pred)


REFUSED = [
    ("linear-tree", LGBMRegressor, {"linear_tree": True}, "linear_tree"),
    ("custom-objective", LGBMRegressor, {"objective": _custom_objective}, "custom objective"),
    ("pred-early-stop", LGBMClassifier, {"pred_early_stop": True}, "pred_early_stop"),
    (
        "cross-entropy-lambda",
        LGBMRegressor,
        {"objective": "cross_entropy_lambda"},
        "objective 'cross_entropy_lambda'; supported: cross_entropy, fair, gamma",
    ),
]


@pytest.mark.parametrize(
    ("cls", "params", "message"), [pytest.param(c, p, m, id=i) for i, c, p, m in REFUSED]
)
def test_unsupported_models_are_refused_by_name(data, cls, params, message) -> None:
    y = data["classifier"] if cls is LGBMClassifier else data["classifier"].astype(float)
    model = cls(**{**KW, "n_estimators": 3}, **params).fit(data["train"][NUMERIC], y)
    with pytest.raises(UnsupportedError, match=message):
        assemble(model)

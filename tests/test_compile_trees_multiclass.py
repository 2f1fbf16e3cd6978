"""Multiclass scikit-learn trees and forests: one probability column per class, compiled to SQL,
run in DuckDB and compared with predict_proba / predict on holdout rows plus the gate's
adversarial rows (NULL, NaN, +-inf, extremes, float32/float64 neighbours of every threshold)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from mlsm_py import to_sql
from mlsm_py.compile.assemblers import assemble
from mlsm_py.parity.gate import ParityReport, check_parity
from tests.helpers import assert_evaluator

# Same reasoning as tests/test_compile_parity.py: the SQL repeats the library's arithmetic up to
# the order of a few additions (ulps); one misrouted node moves a probability by a leaf
# difference, far above 1e-9.
PARITY_TOLERANCE = 1e-9

SEED = 7
N_ROWS = 1500
N_HOLDOUT = 300
NUMERIC = ["x1", "x2", "x3", "x4"]

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


def _dataset() -> tuple[pd.DataFrame, np.ndarray]:
    """Four numeric columns (three with NaN) and a 4-level ordinal signal."""
    rng = np.random.default_rng(SEED)
    n = N_ROWS
    x1 = rng.normal(size=n)
    x2 = rng.uniform(-3, 3, size=n)
    x3 = rng.poisson(1.5, size=n).astype("float64")
    x4 = rng.exponential(2.0, size=n)
    signal = np.sin(2.0 * x1) + 0.4 * x2**2 + 0.5 * x3 * (x1 > 0) - 0.3 * np.log1p(x4)
    noisy = signal + rng.normal(scale=0.4, size=n)
    level = np.digitize(noisy, np.quantile(noisy, [0.25, 0.5, 0.75]))
    df = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "x4": x4})
    df.loc[rng.uniform(size=n) < 0.10, "x1"] = np.nan
    df.loc[rng.uniform(size=n) < 0.06, "x2"] = np.nan
    df.loc[rng.uniform(size=n) < 0.08, "x4"] = np.nan
    return df, level


# Integer labels that are not 0..K-1, and string labels (one needs quoting as a column name).
LABELS = {
    "int": np.array([3, 10, 42, 7]),
    "str": np.array(["bronze", "gold", "Silver Plus", "churned"]),
}


@pytest.fixture(scope="module")
def data():
    df, level = _dataset()
    cut = N_ROWS - N_HOLDOUT
    return {
        "train": df.iloc[:cut].reset_index(drop=True),
        "holdout": df.iloc[cut:].reset_index(drop=True),
        "level": level[:cut],
    }


def _con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _assert_parity(report: ParityReport, n_holdout: int) -> None:
    assert report.passed, report.worst_row
    assert_evaluator(report)
    assert report.max_abs_diff <= PARITY_TOLERANCE, report.worst_row
    assert report.rows_checked > n_holdout, report


TREE_KW = {"max_depth": 6, "random_state": SEED}
FOREST_KW = {"n_estimators": 8, "max_depth": 5, "random_state": SEED}

MODELS = [
    ("tree", lambda: DecisionTreeClassifier(**TREE_KW)),
    ("forest", lambda: RandomForestClassifier(**FOREST_KW)),
    ("extra", lambda: ExtraTreesClassifier(**FOREST_KW)),
]


@pytest.mark.parametrize("labels", sorted(LABELS))
@pytest.mark.parametrize("make", [m for _, m in MODELS], ids=[i for i, _ in MODELS])
def test_multiclass_trained_on_nan_parity(data, make, labels: str) -> None:
    y = LABELS[labels][data["level"]]
    model = make().fit(data["train"], y)
    assembled = assemble(model)
    assert assembled.task == "multiclass"
    assert list(assembled.classes) == list(model.classes_)
    assert len(assembled.probas) == len(model.classes_) == 4
    holdout = data["holdout"]
    # The library itself predicts more than one class on the holdout.
    assert len(set(model.predict(holdout))) >= 3
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


@pytest.mark.parametrize("make", [m for _, m in MODELS], ids=[i for i, _ in MODELS])
def test_multiclass_trained_without_nan_scored_with_nan_parity(data, make) -> None:
    train = data["train"]
    complete = train.notna().all(axis=1).to_numpy()
    y = LABELS["int"][data["level"]]
    model = make().fit(train[complete], y[complete])
    holdout = data["holdout"]
    assert holdout.isna().any(axis=1).sum() > 40
    report = check_parity(model, _con(), holdout, tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(holdout))


def test_three_classes_with_a_rare_class_parity(data) -> None:
    # A bootstrap sample of a rare class: some forest trees never see it (a zero column).
    level = np.minimum(data["level"], 2)
    rare = np.flatnonzero(level == 2)[2:]
    level[rare] = 1
    y = np.array(["a", "b", "c"])[level]
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=SEED)
    model.fit(data["train"], y)
    zero_c = [e for e in model.estimators_ if not (e.tree_.value[:, 0, 2] > 0).any()]
    assert zero_c, "expected a tree that never saw class 'c'"
    report = check_parity(model, _con(), data["holdout"], tolerance=PARITY_TOLERANCE)
    _assert_parity(report, len(data["holdout"]))


def test_binary_stays_one_score(data) -> None:
    y = (data["level"] >= 2).astype(int)
    for _, make in MODELS:
        assembled = assemble(make().fit(data["train"], y))
        assert assembled.task == "classifier"
        assert assembled.score is not None and assembled.probas == ()
        assert [n for n, _ in assembled.outputs()] == ["score"]


@pytest.mark.parametrize("labels", sorted(LABELS))
def test_to_sql_multiclass_columns_score_a_table(data, labels: str) -> None:
    y = LABELS[labels][data["level"]]
    model = RandomForestClassifier(**FOREST_KW).fit(data["train"], y)
    holdout = data["holdout"].assign(lead_id=np.arange(len(data["holdout"])) * 5 + 1)
    con = _con()
    con.register("src", holdout)
    con.execute("CREATE TABLE leads AS SELECT * FROM src")
    result = con.execute(to_sql(model, "leads", key="lead_id"))
    names = [d[0] for d in result.description]
    assert names == ["lead_id", *[f"score_{c}" for c in model.classes_], "predicted_class"]
    rows = {r[0]: r[1:] for r in result.fetchall()}
    proba = model.predict_proba(holdout[NUMERIC])
    predicted = model.predict(holdout[NUMERIC])
    for i, key in enumerate(holdout["lead_id"]):
        got = rows[key]
        assert np.max(np.abs(np.array(got[:-1], dtype=float) - proba[i])) <= PARITY_TOLERANCE
        # Labels come back with their own type: ints as integers, strings as strings.
        assert got[-1] == predicted[i] and type(got[-1]) is type(predicted[i].item())

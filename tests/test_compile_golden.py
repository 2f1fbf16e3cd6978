"""Golden SQL for tiny models: the exact text the compiler must produce, and what it computes.

Each golden string was generated once with mlsm_py.to_sql and then checked by hand:
coefficients, split boundaries and the NULL route are derived in the comments next to it. A
change to the emitter's layout shows up here as a readable diff.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeRegressor

from mlsm_py import to_sql

# The golden values are sums and products of a few exactly representable numbers; allow only
# rounding of the last bit or two.
TOLERANCE = 1e-12


def _run(sql: str, leads: pd.DataFrame) -> dict:
    con = duckdb.connect()
    con.register("leads", leads)
    rows = con.execute(sql).fetchall()
    assert sorted(r[0] for r in rows) == sorted(leads["lead_id"])
    return {r[0]: r[1] for r in rows}


# -- linear regression -----------------------------------------------------------------------

LINEAR_SQL = """WITH inputs AS (
  SELECT
    "lead_id",
    nullif(CAST("a" AS DOUBLE), CAST('NaN' AS DOUBLE)) AS "a",
    nullif(CAST("b" AS DOUBLE), CAST('NaN' AS DOUBLE)) AS "b"
  FROM leads
)
SELECT
  "lead_id",
  0.5E0 + "a" * 2.0E0 + "b" * -3.0E0 AS score
FROM inputs"""


def _linear() -> LinearRegression:
    df = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 2.0, 5.0, 3.0, 1.0]})
    model = LinearRegression().fit(df, 2 * df["a"] - 3 * df["b"] + 0.5)
    # The fit recovers these up to an ulp; set them exactly so the golden text is stable.
    model.coef_ = np.array([2.0, -3.0])
    model.intercept_ = 0.5
    return model


def test_linear_regression_golden_sql() -> None:
    assert to_sql(_linear(), "leads", key="lead_id") == LINEAR_SQL


def test_linear_regression_golden_sql_values() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4],
            "a": [0.0, 1.5, -2.0, 10.0],
            "b": [0.0, 1.0, 0.25, -1.0],
        }
    )
    got = _run(LINEAR_SQL, leads)
    # 0.5 + 2a - 3b by hand.
    assert got == {1: 0.5, 2: 0.5, 3: -4.25, 4: 23.5}
    expected = _linear().predict(leads[["a", "b"]])
    for lead_id, e in zip(leads["lead_id"], expected, strict=True):
        assert abs(got[lead_id] - e) <= TOLERANCE


def test_linear_regression_missing_input_gives_null_score() -> None:
    leads = pd.DataFrame({"lead_id": [1, 2], "a": [np.nan, 1.0], "b": [1.0, None]})
    assert _run(LINEAR_SQL, leads) == {1: None, 2: None}


# -- depth-1 regression trees ----------------------------------------------------------------

# Trained with a NaN whose target sits with the right leaf, so missing values go right:
# the split at 2.5 (midpoint of 2 and 3) is the float32 test "float32(x) <= 2.5". 2.5 is a
# float32 with an even significand; the next float32 up is 2.5 + 2**-22, so every double up to
# and including the midpoint 2.5 + 2**-23 = 2.5000001192092896 rounds to 2.5 or below: "<=".
# A NULL (or NaN) fails the comparison and takes the ELSE (right) leaf.
TREE_NAN_RIGHT_SQL = """WITH inputs AS (
  SELECT
    "lead_id",
    nullif(CAST("x" AS DOUBLE), CAST('NaN' AS DOUBLE)) AS "x"
  FROM leads
)
SELECT
  "lead_id",
  CASE WHEN "x" <= 2.5000001192092896E0 THEN 0.0E0 ELSE 10.0E0 END AS score
FROM inputs"""

# Trained without NaN on 0.1 .. 0.5: the threshold is the double midpoint of float32(0.3) and
# float32(0.4), 0.3500000089406967, which is itself exactly halfway between the adjacent float32
# values 0.3499999940395355 (odd significand) and 0.3500000238418579 (even). A double equal to
# the threshold rounds to the even one, above the threshold, so the test is strict "<".
# No NaN was seen, so a missing value goes to the larger child (left, 3 samples). The SQL tests
# the complement, "x >= boundary", and puts the left leaf in ELSE, where a NULL lands (one
# comparison instead of "x IS NULL OR x < boundary"; docs/decisions/0013-large-ensemble-layout.md).
TREE_NO_NAN_SQL = """WITH inputs AS (
  SELECT
    nullif(CAST("x" AS DOUBLE), CAST('NaN' AS DOUBLE)) AS "x"
  FROM leads
)
SELECT
  CASE WHEN "x" >= 0.3500000089406967E0 THEN 4.0E0 ELSE 1.0E0 END AS score
FROM inputs"""


def _tree_nan_right() -> DecisionTreeRegressor:
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, np.nan]})
    return DecisionTreeRegressor(max_depth=1).fit(X, [0.0, 0.0, 10.0, 10.0, 10.0])


def _tree_no_nan() -> DecisionTreeRegressor:
    X = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4, 0.5]})
    return DecisionTreeRegressor(max_depth=1).fit(X, [1.0, 1.0, 1.0, 4.0, 4.0])


def test_tree_nan_right_golden_sql() -> None:
    model = _tree_nan_right()
    assert model.tree_.threshold[0] == 2.5
    assert not model.tree_.missing_go_to_left[0]
    assert to_sql(model, "leads", key="lead_id") == TREE_NAN_RIGHT_SQL


def test_tree_no_nan_golden_sql() -> None:
    model = _tree_no_nan()
    assert model.tree_.threshold[0] == 0.3500000089406967
    assert model.tree_.missing_go_to_left[0]
    # The facts the comment above relies on.
    lo = np.float32(0.3499999940395355)
    hi = np.nextafter(lo, np.float32(np.inf))
    assert (float(lo) + float(hi)) / 2 == 0.3500000089406967
    assert int(lo.view(np.uint32)) % 2 == 1
    # No key: the statement yields only the score.
    assert to_sql(model, "leads") == TREE_NO_NAN_SQL


def _boundary_rows(threshold: float) -> list[float]:
    f32 = np.float32(threshold)
    around = [
        threshold,
        float(np.nextafter(threshold, -np.inf)),
        float(np.nextafter(threshold, np.inf)),
        float(np.nextafter(f32, np.float32(-np.inf))),
        float(f32),
        float(np.nextafter(f32, np.float32(np.inf))),
    ]
    return around


@pytest.mark.parametrize(
    ("make", "sql", "boundary"),
    [
        (_tree_nan_right, TREE_NAN_RIGHT_SQL, 2.5000001192092896),
        (_tree_no_nan, TREE_NO_NAN_SQL, 0.3500000089406967),
    ],
    ids=["nan-right", "no-nan"],
)
def test_tree_golden_sql_values_match_predict(make, sql: str, boundary: float) -> None:
    model = make()
    xs = [
        *_boundary_rows(boundary),
        *_boundary_rows(float(model.tree_.threshold[0])),
        np.nan,
        math.inf,
        -math.inf,
        0.0,
        -1e30,
        1e30,
    ]
    leads = pd.DataFrame({"lead_id": range(len(xs)), "x": xs})
    con = duckdb.connect()
    con.register("leads", leads)
    rows = con.execute(sql).fetchall()
    # Without a key the rows come back in table order (DuckDB preserves insertion order).
    got = [r[-1] for r in rows] if "lead_id" not in sql else [r[1] for r in sorted(rows)]
    assert len(got) == len(xs)
    # scikit-learn refuses +-inf, so compare those by hand: inf goes right, -inf goes left.
    finite = [i for i, x in enumerate(xs) if not math.isinf(x)]
    expected = model.predict(leads[["x"]].iloc[finite])
    assert [got[i] for i in finite] == list(expected)
    leaves = model.tree_.value[:, 0, 0]
    left, right = leaves[model.tree_.children_left[0]], leaves[model.tree_.children_right[0]]
    assert got[xs.index(math.inf)] == right
    assert got[xs.index(-math.inf)] == left
    # Both leaves are reached from the neighbours of the boundary.
    assert {left, right} <= set(got)


# -- logistic regression ---------------------------------------------------------------------

LOGISTIC_SQL = """WITH inputs AS (
  SELECT
    "lead_id",
    nullif(CAST("a" AS DOUBLE), CAST('NaN' AS DOUBLE)) AS "a",
    nullif(CAST("b" AS DOUBLE), CAST('NaN' AS DOUBLE)) AS "b"
  FROM leads
), stage_1 AS (
  SELECT
    *,
    -0.25E0 + "a" * 0.94E0 + "b" * -0.1E0 AS "__mlsm_0"
  FROM inputs
)
SELECT
  "lead_id",
  CASE
    WHEN "__mlsm_0" > 40.0E0
    THEN 1.0E0
    WHEN "__mlsm_0" >= 0.0E0
    THEN 1.0E0 / (
      1.0E0 + exp(-"__mlsm_0")
    )
    WHEN "__mlsm_0" < -700.0E0
    THEN 0.0E0
    ELSE exp("__mlsm_0") / (
      1.0E0 + exp("__mlsm_0")
    )
  END AS score
FROM stage_1"""


def _logistic() -> LogisticRegression:
    df = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 2.0, 5.0]})
    model = LogisticRegression().fit(df, [0, 1, 0, 1])
    model.coef_ = np.array([[0.94, -0.1]])
    model.intercept_ = np.array([-0.25])
    return model


def test_logistic_regression_golden_sql() -> None:
    assert to_sql(_logistic(), "leads", key="lead_id") == LOGISTIC_SQL


def test_logistic_regression_golden_sql_values() -> None:
    a = [0.0, 1.0, -3.0, 100.0, -1000.0, 0.25 / 0.94]
    b = [0.0, 2.0, 4.0, 0.0, 0.0, 0.0]
    leads = pd.DataFrame({"lead_id": range(len(a)), "a": a, "b": b})
    got = _run(LOGISTIC_SQL, leads)
    for i, (ai, bi) in enumerate(zip(a, b, strict=True)):
        margin = -0.25 + ai * 0.94 + bi * -0.1
        assert abs(got[i] - expit(margin)) <= TOLERANCE
    assert got[3] == 1.0  # margin 93.75 saturates
    assert got[4] == 0.0  # margin -940.25 saturates
    assert abs(got[5] - 0.5) <= TOLERANCE  # margin ~ 0
    expected = _logistic().predict_proba(leads[["a", "b"]])[:, 1]
    assert max(abs(got[i] - e) for i, e in enumerate(expected)) <= TOLERANCE


# -- a preprocessing pipeline ----------------------------------------------------------------

# SimpleImputer(mean) on age [20, NaN, 40, 30] learns 30; the categorical imputer fills
# 'missing' and the encoder knows ads < email < missing. Weights are set by hand. The three
# one-hot terms are one CASE yielding the weight of the level present (0 for an unseen level):
# the other two terms are exact zeros, so the sum is bit-identical to adding all three
# (docs/decisions/0013-large-ensemble-layout.md).
PIPELINE_SQL = """WITH inputs AS (
  SELECT
    "lead_id",
    nullif(CAST("age" AS DOUBLE), CAST('NaN' AS DOUBLE)) AS "age",
    CAST("channel" AS TEXT) AS "channel"
  FROM leads
), stage_1 AS (
  SELECT
    *,
    coalesce("age", 30.0E0) AS "__mlsm_0"
  FROM inputs
)
SELECT
  "lead_id",
  -1.0E0 + "__mlsm_0" * 0.5E0 + CASE
    WHEN coalesce("channel", 'missing') = 'ads'
    THEN 1.0E0
    WHEN coalesce("channel", 'missing') = 'email'
    THEN -2.0E0
    WHEN coalesce("channel", 'missing') = 'missing'
    THEN 0.25E0
    ELSE 0.0E0
  END AS score
FROM stage_1"""


def _pipeline() -> Pipeline:
    train = pd.DataFrame(
        {"age": [20.0, np.nan, 40.0, 30.0], "channel": ["ads", "email", np.nan, "ads"]}
    )
    categorical = Pipeline(
        [
            ("imp", SimpleImputer(strategy="constant", fill_value="missing")),
            ("ohe", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    prep = ColumnTransformer([("num", SimpleImputer(), ["age"]), ("cat", categorical, ["channel"])])
    model = Pipeline([("prep", prep), ("m", LinearRegression())])
    model.fit(train, [1.0, 2.0, 3.0, 4.0])
    model[-1].coef_ = np.array([0.5, 1.0, -2.0, 0.25])
    model[-1].intercept_ = -1.0
    return model


def test_pipeline_golden_sql() -> None:
    model = _pipeline()
    assert list(model[0].named_transformers_["num"].statistics_) == [30.0]
    assert list(model[0].named_transformers_["cat"][-1].categories_[0]) == [
        "ads",
        "email",
        "missing",
    ]
    assert to_sql(model, "leads", key="lead_id") == PIPELINE_SQL


def test_pipeline_golden_sql_values() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "age": [10.0, np.nan, None, 50.0, 30.0],
            "channel": ["ads", "email", None, "web", "missing"],
        }
    )
    got = _run(PIPELINE_SQL, leads)
    # -1 + age/2 + (ads: 1, email: -2, missing/NULL: 0.25, unseen 'web': 0).
    assert got == {1: 5.0, 2: 12.0, 3: 14.25, 4: 24.0, 5: 14.25}
    frame = leads[["age", "channel"]].astype({"channel": object})
    frame.loc[frame["channel"].isna(), "channel"] = np.nan
    expected = _pipeline().predict(frame)
    for lead_id, e in zip(leads["lead_id"], expected, strict=True):
        assert abs(got[lead_id] - e) <= TOLERANCE

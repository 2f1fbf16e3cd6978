"""Definitions for the lifecycle tests: one live model whose estimator is chosen by a variant
(a weak first champion, a deliberately worse and a clearly better challenger) and a draft.

A test project copies this file and names `lifecycle_defs:PROJECT` in its pyproject.toml; the
variant comes from $LIFECYCLE_VARIANT, so a subprocess (`mlsm retrain`) sees the one the test
chose."""

from __future__ import annotations

import os

from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlsm_py.spec import Definitions, Field, Model, Promotion, SummaryModel, TimeSplit

FIELDS = (
    Field("country", "category"),
    Field("source_channel", "category"),
    Field("visits", "integer", nullable=False, min=0),
    Field("pages_viewed", "integer", nullable=False, min=0),
    Field("quotes_requested", "integer", nullable=False, min=0),
    Field("session_minutes", "double", min=0),
)
SPLIT = TimeSplit("created_at", holdout_days=60, gap_days=14, label_ready_after_days=30)


def _numbers(cols):
    return Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    ), cols


def estimator(variant: str):
    if variant == "weak":  # one input: a champion a better model can beat
        return Pipeline(
            [
                ("columns", ColumnTransformer([("num", *_numbers(["visits"]))])),
                ("model", LogisticRegression()),
            ]
        )
    if variant == "worse":  # a constant score: ROC AUC 0.5, never better than the champion
        return DummyClassifier(strategy="prior")
    if variant == "better":
        cat = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        nums = ["visits", "pages_viewed", "quotes_requested", "session_minutes"]
        return Pipeline(
            [
                (
                    "columns",
                    ColumnTransformer(
                        [("num", *_numbers(nums)), ("cat", cat, ["country", "source_channel"])]
                    ),
                ),
                ("model", LogisticRegression(max_iter=1000)),
            ]
        )
    raise ValueError(f"unknown variant {variant!r}")


def make(variant: str = "weak", population: str | None = "converted is null") -> Definitions:
    live = Model(
        name="lead_a",
        version=1,
        status="live",
        features="lead_features",
        key="lead_id",
        target="converted",
        fields=FIELDS,
        estimator=estimator(variant),
        split=SPLIT,
        population=population,
        promotion=Promotion("roc_auc", 0.0),
    )
    draft = Model(
        name="lead_d",
        version=1,
        status="draft",
        features="lead_features",
        key="lead_id",
        target="converted",
        fields=FIELDS,
        estimator=Pipeline(
            [
                ("columns", ColumnTransformer([("num", *_numbers(["visits", "pages_viewed"]))])),
                ("model", DecisionTreeClassifier(max_depth=3, random_state=0)),
            ]
        ),
        split=SPLIT,
        population=population,
    )
    return Definitions([live, draft], [SummaryModel("lead_winner", ("lead_a", "lead_d"))])


PROJECT = make(os.environ.get("LIFECYCLE_VARIANT", "weak"))

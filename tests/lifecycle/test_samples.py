"""Sampling marked in the warehouse: with a validation window, which rows of a fit were train,
validation and test is in mlsm_registry.fit_samples -- disjoint, time-ordered with the declared
gaps, exactly the rows the fit saw -- and LightGBM stops early on the validation rows, its
compiled model keeping only the trees up to the best iteration (the parity gate passed)."""

from __future__ import annotations

import dataclasses

import pytest
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from mlsm_py.demo.data import generate_leads
from mlsm_py.flow.lifecycle import run_train
from mlsm_py.spec import Definitions, TimeSplit
from tests.helpers import champions, load, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
SPLIT = TimeSplit(
    "created_at",
    holdout_days=60,
    gap_days=14,
    label_ready_after_days=30,
    validation_days=30,
    early_stopping_rounds=5,
)


def _defs() -> Definitions:
    base = make("weak")
    lgbm = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [("num", "passthrough", ["visits", "pages_viewed", "quotes_requested"])]
                ),
            ),
            (
                "model",
                LGBMClassifier(
                    n_estimators=400,
                    learning_rate=0.2,
                    num_leaves=7,
                    random_state=3,
                    deterministic=True,
                    force_row_wise=True,
                    n_jobs=1,
                    verbose=-1,
                ),
            ),
        ]
    )
    live = dataclasses.replace(base.models[0], estimator=lgbm, split=SPLIT)
    return Definitions([live], [])


def test_samples_are_marked_disjoint_time_ordered_and_exactly_what_the_fit_saw(tmp_path):
    s = session(tmp_path, _defs())
    load(s.project.warehouse, generate_leads(6000, seed=91))
    run_train(s)
    wh = s.project.warehouse
    (fit_id, train_rows, holdout_rows, holdout_from, train_before, parity) = query(
        wh,
        "select fit_id, train_rows, holdout_rows, holdout_from, train_before, parity_passed "
        "from mlsm_registry.fits",
    )[0]
    assert parity
    marks = query(
        wh,
        "select s.sample, count(*), count(distinct s.record_key), min(f.created_at), "
        "max(f.created_at), sum(case when s.label = f.converted then 1 else 0 end) "
        "from mlsm_registry.fit_samples s join lead_features f "
        "on f.lead_id = cast(s.record_key as bigint) where s.fit_id = ? group by 1",
        [fit_id],
    )
    by = {m[0]: m[1:] for m in marks}
    assert set(by) == {"train", "validation", "test"}
    keys = query(
        wh,
        "select count(*), count(distinct record_key) from mlsm_registry.fit_samples "
        "where fit_id = ?",
        [fit_id],
    )[0]
    assert keys[0] == keys[1]  # disjoint: no record in two samples
    assert by["train"][0] == train_rows and by["test"][0] == holdout_rows
    for n, distinct, _, _, labels_match in by.values():
        assert n == distinct == labels_match  # the labels the fit saw
    validation_from = train_before - __import__("datetime").timedelta(days=30)
    assert query(wh, "select validation_from from mlsm_registry.fits")[0][0] == validation_from
    assert by["train"][3] < validation_from <= by["validation"][2]
    assert by["validation"][3] < train_before  # then the 14-day gap
    assert by["test"][2] >= holdout_from and holdout_from - train_before >= (
        __import__("datetime").timedelta(days=14)
    )
    # Exactly the matured rows of each window: no row of lead_features is missing a mark.
    (expected,) = query(
        wh,
        "select count(*) from lead_features where created_at < ? or "
        "(created_at >= ? and created_at <= (select matured_until from mlsm_registry.fits))",
        [train_before, holdout_from],
    )[0]
    assert sum(v[0] for v in by.values()) == expected
    # Early stopping happened on the validation rows and the compiled model followed it.
    _, est = champions(wh)["lead_a"]
    final = est.steps[-1][1]
    assert 0 < final.best_iteration_ < 400

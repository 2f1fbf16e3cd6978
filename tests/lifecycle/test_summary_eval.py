"""`mlsm train` evaluates every summary model on the holdout next to its members and warns
when one loses to its best member: a fixed priority that puts the weak model first must warn,
best_member must not, and both evaluations are in the registry."""

from __future__ import annotations

import dataclasses

import pytest

from mlsm_py.demo.data import generate_leads
from mlsm_py.flow.lifecycle import run_train
from mlsm_py.spec import Definitions, SummaryModel
from tests.helpers import load, query, session
from tests.lifecycle_defs import estimator, make

pytestmark = pytest.mark.dbt


def _defs() -> Definitions:
    weak = make("weak").models[0]
    constant = dataclasses.replace(weak, name="lead_b", estimator=estimator("worse"))
    return Definitions(
        [weak, constant],
        [
            # lead_b (a constant score) first: the summary is lead_b, worse than lead_a
            SummaryModel("by_priority", ("lead_b", "lead_a"), rule="priority"),
            SummaryModel("by_best", ("lead_b", "lead_a")),
        ],
    )


def test_train_warns_when_a_summary_loses_to_its_best_member(tmp_path):
    s = session(tmp_path, _defs())
    said: list[str] = []
    s.say = said.append
    load(s.project.warehouse, generate_leads(4000, seed=17))
    run_train(s)
    text = "\n".join(said)
    auc = dict(
        query(
            s.project.warehouse,
            "select model_name, value from mlsm_registry.fit_metrics join mlsm_registry.fits "
            "using (fit_id) where metric = 'roc_auc'",
        )
    )
    assert auc["lead_a"] > auc["lead_b"] == 0.5  # the premise: a constant ranks nothing
    # A table per summary: the summary, then each member.
    assert "by_priority (rule priority) on" in text and "by_best (rule best_member) on" in text
    warnings = [ln for ln in said if "warning:" in ln]
    assert len(warnings) == 1, warnings
    assert (
        "summary model by_priority (rule priority) loses to its best member lead_a" in (warnings[0])
    )
    assert f"ROC AUC {auc['lead_b']:.4f} vs {auc['lead_a']:.4f}" in warnings[0]
    rows = dict(
        query(
            s.project.warehouse,
            "select summary_model, value from mlsm_registry.summary_metrics "
            "where member is null and metric = 'roc_auc' and sample = 'holdout'",
        )
    )
    assert rows["by_priority"] == pytest.approx(auc["lead_b"], abs=1e-12)
    assert rows["by_best"] == pytest.approx(auc["lead_a"], abs=1e-12)

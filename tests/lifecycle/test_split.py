"""A split summary model through a real dbt build: every record's arm equals Python's, the
arm's champion is the winner, and the sample-ratio check passes, and fails when the arms are
skewed."""

from __future__ import annotations

import dataclasses

import duckdb
import pytest

from mlsm_py.dbt import runner
from mlsm_py.demo.data import generate_leads
from mlsm_py.spec import Definitions, Split, SummaryModel
from tests.helpers import build_project, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
SPLIT = Split((("lead_a", 0.7), ("lead_d", 0.3)), salt="test-2026")


def _defs() -> Definitions:
    base = make("weak", population=None)
    a, d = base.models
    models = [a, dataclasses.replace(d, status="live")]
    return Definitions(
        models,
        [
            SummaryModel("lead_winner", ("lead_a", "lead_d")),
            SummaryModel("lead_ab", ("lead_a", "lead_d"), rule="split", split=SPLIT),
        ],
    )


def test_split_assigns_arms_as_python_does_and_checks_the_ratio(tmp_path):
    s = session(tmp_path, _defs())
    build_project(s, generate_leads(4000, seed=61))
    wh = s.project.warehouse
    rows = query(
        wh,
        "select lead_id, arm, winning_model, score from published.winners "
        "where summary_model = 'lead_ab' order by lead_id",
    )
    assert len(rows) == 4000
    assert all(arm == SPLIT.arm_of(k) for k, arm, _, _ in rows)
    assert all(model == arm and score is not None for _, arm, model, score in rows)
    share = sum(1 for r in rows if r[1] == "lead_d") / len(rows)
    assert abs(share - 0.3) < 0.03
    champion_scores = dict(
        query(
            wh,
            "select lead_id || ':' || model_name, score from published.scores "
            "where role = 'champion'",
        )
    )
    assert all(champion_scores[f"{k}:{arm}"] == score for k, arm, _, score in rows)
    assert (
        query(
            wh,
            "select count(*) from published.winners where summary_model = "
            "'lead_winner' and arm is not null",
        )[0][0]
        == 0
    )
    # The arm is in the score history too (each record as first published).
    history = query(
        wh,
        "select lead_id, arm from history.winners where summary_model = 'lead_ab'",
    )
    assert len(history) == 4000 and all(arm == SPLIT.arm_of(k) for k, arm in history)

    # Skew the audited winners: the sample-ratio check must fail.
    con = duckdb.connect(str(wh))
    con.execute(
        "update audit.winners set arm = 'lead_a' where summary_model = 'lead_ab' "
        "and lead_id % 2 = 0"
    )
    con.close()
    outcome = runner.run(s.dbt, ["test", "--select", "winners"])
    assert not outcome.success
    assert any("winners__lead_ab__sample_ratio" in f for f in outcome.failures), outcome.failures

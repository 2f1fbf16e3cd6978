"""Realised outcomes: each record's first published scores and winner are kept in the history
(arm included), never re-added by later builds; once outcomes arrive, `mlsm evaluate` judges
the published list on them, next to each member, and records it in the registry."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlsm_py.demo.data import generate_leads
from mlsm_py.flow import evaluate
from mlsm_py.flow.build import run_build
from tests.helpers import build_project, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt


def test_realised_outcomes_are_judged_on_the_first_published_scores(tmp_path):
    s = session(tmp_path, make("weak"))
    build_project(s, generate_leads(4000, seed=23))
    wh = s.project.warehouse
    first = query(wh, "select lead_id, score, percentile, arm from history.winners")
    (open_leads,) = query(wh, "select count(*) from published.winners")[0]
    assert len(first) == open_leads > 0
    run_build(s)  # a second publication adds no record twice
    assert query(wh, "select count(*) from history.winners")[0][0] == open_leads
    assert query(wh, "select count(*) from history.scores")[0][0] == 2 * open_leads
    with s.registry() as con:
        assert evaluate.realised(s, con) == []  # no outcome has arrived yet
    # Outcomes arrive for the open leads: those with many visits convert.
    con = duckdb.connect(str(wh))
    con.execute(
        "update raw.leads set converted = case when visits >= 8 then 1 else 0 end "
        "where converted is null"
    )
    con.close()
    run_build(s)
    with s.registry() as con:
        reports = evaluate.report(s, con, sample="realised")
    (r,) = reports
    rows = query(
        wh,
        "select w.score, f.converted, s.score from history.winners w "
        "join lead_features f using (lead_id) join history.scores s using (lead_id) "
        "where s.model_name = 'lead_a' order by lead_id",
    )
    y = np.array([row[1] for row in rows], dtype=float)
    assert r.rows == len(rows) == open_leads and 0 < y.mean() < 1
    want = roc_auc_score(y, [row[0] for row in rows])
    assert r.metrics["roc_auc"] == pytest.approx(want, abs=1e-12)
    assert r.members["lead_a"]["roc_auc"] == pytest.approx(
        roc_auc_score(y, [row[2] for row in rows]), abs=1e-12
    )
    recorded = query(
        wh,
        "select member, value from mlsm_registry.summary_metrics "
        "where sample = 'realised' and metric = 'roc_auc' order by member nulls first",
    )
    assert recorded[0][0] is None and recorded[0][1] == pytest.approx(want, abs=1e-12)
    assert [m for m, _ in recorded[1:]] == ["lead_a"]

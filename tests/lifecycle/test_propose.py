"""Review mode: `mlsm retrain --propose` registers and writes the challenger with a `proposed`
decision and promotes nothing; the diff is deterministic; `mlsm promote` applies it."""

from __future__ import annotations

import pytest

from mlsm_py.demo.data import generate_leads
from mlsm_py.flow.aliases import promote
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_retrain
from tests.helpers import build_project, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt


def test_propose_then_promote(tmp_path):
    s = session(tmp_path, make("weak"))
    build_project(s, generate_leads(3000, seed=41))
    wh = s.project.warehouse
    champion = query(
        wh,
        "select fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
        "and alias = 'champion'",
    )[0][0]
    published = query(wh, "select * from published.scores order by all")
    scores_dir = s.project.dbt_dir / "models" / "scores"

    s.project._definitions = make("better")
    (o,) = run_retrain(s, propose=True)
    assert o.outcome == "proposed"
    proposal = scores_dir / "score__lead_a__challenger.sql"
    first_text = proposal.read_text()
    assert o.challenger_fit in first_text
    (outcome, to_fit, reason) = query(
        wh,
        "select outcome, to_fit, reason from mlsm_registry.decisions "
        "where model_name = 'lead_a' order by decided_at desc limit 1",
    )[0]
    assert (outcome, to_fit) == ("proposed", o.challenger_fit) and "roc_auc" in reason
    assert (
        query(
            wh,
            "select fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
            "and alias = 'champion'",
        )[0][0]
        == champion
    )
    assert query(wh, "select * from published.scores order by all") == published

    # Proposing again on the same data writes the same bytes: a reviewable, stable diff.
    run_retrain(s, propose=True)
    assert proposal.read_text() == first_text

    promote(s, "lead_a")
    rows = query(
        wh,
        "select outcome, from_fit, to_fit, reason from mlsm_registry.decisions "
        "where model_name = 'lead_a' order by decided_at desc limit 1",
    )
    assert rows[0][:3] == ("promoted", champion, o.challenger_fit)
    assert "as compared on" in rows[0][3]
    metrics = query(
        wh,
        "select count(*) from mlsm_registry.decision_metrics d join "
        "mlsm_registry.decisions x using (decision_id) where x.outcome = "
        "'promoted' and x.action = 'promote'",
    )[0][0]
    assert metrics > 0  # the numbers it was decided on travel with the promotion
    assert (
        not proposal.exists() and o.challenger_fit in (scores_dir / "score__lead_a.sql").read_text()
    )
    run_build(s)
    assert {
        r[0]
        for r in query(
            wh, "select distinct fit_id from published.scores where model_name = 'lead_a'"
        )
    } == {o.challenger_fit}

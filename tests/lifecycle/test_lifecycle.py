"""The model lifecycle on a real dbt project and DuckDB file: train -> build -> retrain with a
worse challenger (kept) -> a better one (promoted) -> rollback, asserting published rows and the
audit rows, with exactly one champion after every step. Then the refusals: a challenger that
fails parity, and a generated model whose fit is not registered in the warehouse."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlsm_py.compile import emitter
from mlsm_py.dbt import runner
from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import BuildError, ParityError
from mlsm_py.estimator import input_types, score_vector
from mlsm_py.flow.aliases import promote, rollback, status
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_retrain, run_train
from mlsm_py.frames import model_frame
from tests.helpers import champions, load, one_champion_each, query, run_counts, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
ROWS = 4000


def _published(wh, role="champion"):
    return query(
        wh,
        "select lead_id, score, fit_id from published.scores where model_name = 'lead_a' "
        "and role = ? order by lead_id",
        [role],
    )


def _decisions(wh):
    return query(
        wh,
        "select decision_id, action, outcome, actor, from_fit, to_fit, reason, rule "
        "from mlsm_registry.decisions where model_name = 'lead_a' order by decided_at",
    )


def _compared(wh, decision_id):
    rows = query(
        wh,
        "select role, fit_id, metric, value from mlsm_registry.decision_metrics "
        "where decision_id = ?",
        [decision_id],
    )
    out: dict = {}
    for role, fit_id, metric, value in rows:
        out.setdefault(role, {"fit_id": fit_id})[metric] = value
    return out


def _champion(wh):
    return query(
        wh,
        "select fit_id from mlsm_registry.aliases where model_name = 'lead_a' and alias = ?",
        ["champion"],
    )[0][0]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    s = session(tmp_path_factory.mktemp("lifecycle"), make("weak"))
    load(s.project.warehouse, generate_leads(ROWS, seed=21))
    return s


def test_train_build_retrain_promote_rollback(lifecycle):
    s = lifecycle
    wh = s.project.warehouse

    # Day one: the first fit of each model becomes its champion; the build publishes it.
    run_train(s)
    run_build(s)
    first = _champion(wh)
    published_first = _published(wh)
    assert published_first and {r[2] for r in published_first} == {first}
    assert one_champion_each(wh) == {"lead_a": 1, "lead_d": 1}
    assert _decisions(wh)[-1][1:3] == ("first_fit", "promoted")

    # A changed definition is reported as stale until it is trained.
    s.project._definitions = make("worse")
    stale = {r["model"]: r["stale"] for r in status(s)}
    assert any("definition changed" in line for line in stale["lead_a"])
    assert stale["lead_d"] == []

    # A deliberately worse challenger (a constant score) is kept out; the decision says why.
    s.actor = "factory"
    (kept,) = run_retrain(s)
    assert kept.outcome == "kept"
    d_id, action, outcome, actor, from_fit, to_fit, reason, rule = _decisions(wh)[-1]
    assert (action, outcome, actor, from_fit) == ("retrain", "kept", "factory", first)
    assert "not above the required gain" in reason and "roc_auc gain > 0" in rule
    compared = _compared(wh, d_id)
    assert compared["challenger"]["fit_id"] == to_fit and compared["challenger"]["roc_auc"] == 0.5
    assert compared["champion"]["fit_id"] == first
    # The champion was re-scored on the same newest matured rows, not judged by old numbers.
    fit_row, est = champions(wh)["lead_a"]
    m = s.defs.model("lead_a")
    con = duckdb.connect(str(wh))
    try:
        rows = con.execute(
            "select * from lead_features where created_at >= ? and created_at <= ? "
            "order by lead_id",
            [fit_row["holdout_from"], fit_row["matured_until"]],
        ).df()
        (bounds,) = con.execute(
            "select eval_from, eval_until, eval_rows from mlsm_registry.decisions "
            "where decision_id = ?",
            [d_id],
        ).fetchall()
        rows = con.execute(
            "select * from lead_features where created_at >= ? and created_at <= ? "
            "order by lead_id",
            [bounds[0], bounds[1]],
        ).df()
    finally:
        con.close()
    assert len(rows) == bounds[2]
    auc = roc_auc_score(
        rows["converted"], score_vector(est, model_frame(rows, input_types(m.fields)))
    )
    assert abs(compared["champion"]["roc_auc"] - auc) < 1e-12
    # Published: the champion's scores unchanged; the challenger shadow-scored beside them.
    assert _published(wh) == published_first
    shadow = _published(wh, "challenger")
    assert len(shadow) == len(published_first) and {r[2] for r in shadow} == {to_fit}
    assert (
        query(wh, "select count(*) from published.winners where winning_fit_id <> ?", [first])[0][0]
        == 0
    )
    assert one_champion_each(wh) == {"lead_a": 1, "lead_d": 1}

    # A clearly better challenger is promoted; published rows now carry its fit id.
    s.project._definitions = make("better")
    (promoted,) = run_retrain(s)
    assert promoted.outcome == "promoted" and promoted.new > promoted.old
    d_id, action, outcome, _, from_fit, better, reason, _ = _decisions(wh)[-1]
    assert (action, outcome, from_fit) == ("retrain", "promoted", first)
    compared = _compared(wh, d_id)
    assert compared["challenger"]["roc_auc"] > compared["champion"]["roc_auc"]
    assert _champion(wh) == better
    now = _published(wh)
    assert {r[2] for r in now} == {better} and [r[0] for r in now] == [
        r[0] for r in published_first
    ]
    assert _published(wh, "challenger") == []  # the winner left the challenger slot
    assert {
        r[0]
        for r in query(
            wh,
            "select distinct winning_fit_id from published.winners where winning_model = 'lead_a'",
        )
    } == {better}
    assert one_champion_each(wh) == {"lead_a": 1, "lead_d": 1}

    # Roll back: the previous champion's scores again, identical to before.
    s.actor = "alice"
    rollback(s, "lead_a")
    assert _champion(wh) == first
    d = _decisions(wh)[-1]
    assert d[1:6] == ("rollback", "rolled_back", "alice", better, first)
    run_build(s)
    assert _published(wh) == published_first
    assert one_champion_each(wh) == {"lead_a": 1, "lead_d": 1}

    # And promote by hand again (a forced change is an audit row too).
    promote(s, "lead_a", better)
    d = _decisions(wh)[-1]
    assert d[1:3] == ("promote", "forced") and d[5] == better
    run_build(s)
    assert {r[2] for r in _published(wh)} == {better}
    # History, newest first, holds every step.
    from mlsm_py.flow.aliases import history

    outcomes = [h["outcome"] for h in history(s, "lead_a")]
    assert outcomes == ["forced", "rolled_back", "promoted", "kept", "promoted"]


def test_a_challenger_failing_parity_is_never_promoted(lifecycle, monkeypatch):
    s = lifecycle
    wh = s.project.warehouse
    champion, published = _champion(wh), _published(wh)
    files = {p: p.read_bytes() for p in (s.project.dbt_dir / "models").rglob("*") if p.is_file()}
    s.project._definitions = make("weak")
    real = emitter.SqlEmitter.number

    def off_by_a_little(self, value):  # every constant 1e-6 off: the gate must notice
        return real(self, float(value) * (1 + 1e-6) if value else value)

    monkeypatch.setattr(emitter.SqlEmitter, "number", off_by_a_little)
    with pytest.raises(ParityError, match="parity failed for model 'lead_a'"):
        run_retrain(s)
    assert _champion(wh) == champion and _published(wh) == published
    refused = _decisions(wh)[-1]
    assert refused[1:3] == ("retrain", "refused") and "parity failed" in refused[6]
    assert {p: p.read_bytes() for p in files} == files
    assert query(wh, "select count(*) from mlsm_registry.pending")[0][0] == 0


def test_unregistered_fit_fails_the_build_and_publishes_nothing(lifecycle):
    """Plain `dbt build` with a generated model whose fit this warehouse never registered (as
    if written for another warehouse): the provenance check fails and nothing is published.
    `mlsm build` rewrites the file from the registry and publishes again."""
    s = lifecycle
    wh = s.project.warehouse
    before = run_counts(wh)
    path = s.project.dbt_dir / "models" / "scores" / "score__lead_a.sql"
    original = path.read_text()
    fit_id = _champion(wh)
    path.write_text(original.replace(fit_id, "0123456789abcdef"))
    with pytest.raises(BuildError) as err:
        runner.build(s.dbt)
    assert "score__lead_a__fit_is_registered_champion" in str(err.value)
    assert run_counts(wh) == before
    run_build(s)
    assert path.read_text() == original
    assert {r[2] for r in _published(wh)} == {fit_id}


def test_immature_leads_are_left_out_of_training(lifecycle):
    s = lifecycle
    wh = s.project.warehouse
    row, _ = champions(wh)["lead_a"]
    (newest, unlabeled_after) = query(
        wh,
        "select max(created_at), count(*) filter (where converted is null and created_at "
        "<= ?) from lead_features",
        [row["matured_until"]],
    )[0]
    assert row["immature_rows"] > 0 and unlabeled_after == 0
    assert (newest - row["matured_until"]).days == 30
    assert row["train_before"] < row["holdout_from"] <= row["matured_until"]
    assert np.isfinite(row["train_rows"]) and row["holdout_rows"] > 0


def test_hand_edited_generated_model_fails_the_build(lifecycle):
    """Same fit id, different SQL: the file dbt reads is compared with the checksum mlsm
    recorded when it wrote it, so a hand edit (or a stale copy) is refused too."""
    s = lifecycle
    wh = s.project.warehouse
    before = run_counts(wh)
    path = s.project.dbt_dir / "models" / "scores" / "score__lead_a.sql"
    original = path.read_text()
    path.write_text(
        original.replace("select", "select /* tuned by hand */", 1)
        if "select" in original
        else original.replace("SELECT", "SELECT 1 AS x,", 1)
    )
    assert path.read_text() != original
    with pytest.raises(BuildError) as err:
        runner.build(s.dbt)
    assert "score__lead_a__fit_is_registered_champion" in str(err.value)
    assert run_counts(wh) == before
    run_build(s)  # rewritten from the registry, published again
    assert path.read_text() == original

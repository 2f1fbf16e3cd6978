"""A real `dbt build` on a small generated data set: scoring, winners, the winner unit test,
and write-audit-publish when the input breaks a contract."""

from __future__ import annotations

import duckdb
import pytest

from mlsm_py import pipeline
from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import BuildError
from models_py import MODELS, SUMMARIES
from tests.helpers import build_project, copy_project

pytestmark = pytest.mark.dbt
ROWS = 4000


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dbt")
    p = pipeline.Project(copy_project(tmp), tmp / "wh" / "mlsm.duckdb", MODELS, SUMMARIES)
    compiled, outcome = build_project(p, generate_leads(ROWS, seed=3))
    return p, compiled, outcome


def _query(p, sql):
    con = duckdb.connect(str(p.warehouse))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_build_publishes_scores_and_winners(built):
    p, compiled, outcome = built
    assert outcome.success
    assert outcome.counts.get("fail", 0) == 0 and outcome.counts.get("error", 0) == 0
    n_models = len(MODELS)
    (n_scores, n_leads, n_runs, null_scores) = _query(
        p,
        "select count(*), count(distinct lead_id), count(distinct run_id), "
        "count(*) filter (where score is null) from published.scores",
    )[0]
    assert n_leads == ROWS and n_scores == ROWS * n_models and n_runs == 1 and null_scores == 0
    (n_winners, n_distinct, draft_wins) = _query(
        p,
        "select count(*), count(distinct lead_id), "
        "count(*) filter (where winning_model = 'lead_extra_trees') from published.winners",
    )[0]
    assert n_winners == ROWS and n_distinct == ROWS and draft_wins == 0
    # The winner is the highest live score (checked against the long table independently).
    mismatches = _query(
        p,
        """
        with best as (
            select lead_id, max(score) as top from published.scores
            where model_status = 'live' group by lead_id
        )
        select count(*) from published.winners w join best using (lead_id)
        where w.score <> best.top
        """,
    )[0][0]
    assert mismatches == 0


def test_winner_unit_test_ran(built):
    _, _, outcome = built
    # dbt reports unit tests with the data tests; one per summary model, and they passed.
    assert outcome.counts.get("pass", 0) > 0


def test_scores_equal_python_model(built):
    """The scores dbt wrote are the library's own predictions for the holdout rows."""
    p, compiled, _ = built
    import numpy as np

    for c in compiled:
        fit = c.fit
        keys = fit.holdout.index  # holdout rows are read in key order; fetch them back by key
        rows = _query(
            p,
            "select s.score from audit.scores s join lead_features f using (lead_id) "
            f"where s.model_name = '{fit.model.name}' and f.created_at >= "
            f"'{fit.metrics['holdout_from']}' order by lead_id",
        )
        got = np.array([r[0] for r in rows])
        expected = fit.estimator.predict_proba(fit.holdout)[:, 1]
        assert len(got) == len(keys)
        assert np.max(np.abs(got - expected)) <= 1e-9


def test_bad_input_fails_checks_and_keeps_published_tables(built):
    p, _, _ = built
    before = _query(p, "select run_id, count(*) from published.scores group by run_id")
    before_w = _query(p, "select run_id, count(*) from published.winners group by run_id")
    con = duckdb.connect(str(p.warehouse))
    con.execute("update raw.leads set visits = -5 where lead_id in (7, 8, 9)")
    con.close()
    with pytest.raises(BuildError) as err:
        pipeline.runner.build(p.project_dir, p.warehouse)
    message = str(err.value)
    assert "lead_features.visits" in message
    assert "accepted_range" in message and "'min_value': 0" in message
    assert "3 rows" in message
    # Nothing downstream of the failing check was rebuilt: same run, same rows.
    assert _query(p, "select run_id, count(*) from published.scores group by run_id") == before
    assert _query(p, "select run_id, count(*) from published.winners group by run_id") == before_w
    # Repair the data: the next build publishes a new run.
    con = duckdb.connect(str(p.warehouse))
    con.execute("update raw.leads set visits = 0 where lead_id in (7, 8, 9)")
    con.close()
    pipeline.runner.build(p.project_dir, p.warehouse)
    after = _query(p, "select run_id from published.scores group by run_id")
    assert len(after) == 1 and after[0][0] != before[0][0]


def test_generated_sql_is_deterministic(built):
    p, compiled, _ = built
    from mlsm_py.compile.assemblers import assemble
    from mlsm_py.dbt.writer import compile_for_dbt

    for c in compiled:
        if c.compiled.path != "sql":
            continue
        again = compile_for_dbt(c.fit.model, assemble(c.fit.estimator), c.fit.estimator_name)
        assert again.sql == c.compiled.sql and again.fit_id == c.compiled.fit_id
        on_disk = (p.project_dir / "models" / "scores" / f"{c.compiled.dbt_name}.sql").read_text()
        assert c.compiled.sql in on_disk and c.compiled.fit_id in on_disk
        assert on_disk.startswith("-- Generated by mlsm")


def test_registry_holds_every_fit(built):
    p, compiled, _ = built
    rows = _query(
        p,
        "select model_name, fit_id, artifact_path, artifact_sha256, parity "
        "from mlsm_registry.fits order by model_name",
    )
    assert sorted(r[0] for r in rows) == sorted(m.name for m in MODELS)
    from pathlib import Path

    from mlsm_py.registry import artifacts

    for _, _, path, sha, parity in rows:
        est = artifacts.load(Path(path), sha)
        assert hasattr(est, "predict")
        assert '"passed": true' in parity

"""One project, one data set, two warehouses: the demo's definitions trained, built, retrained,
promoted and rolled back on DuckDB and on PostgreSQL (a fresh database on CI's server), with
the published rows and the decision rows compared row by row. Then, on PostgreSQL, a failing
check must leave the published tables as they were.

Scores agree within 1e-9 (the parity tolerance); everything else (keys, fits, arms, winners,
reasons, bands, decisions) must be identical."""

from __future__ import annotations

import dataclasses
import math
import os
import uuid

import numpy as np
import pyarrow as pa
import pytest

from mlsm_py.demo.data import DAYS, START, generate_leads, load_leads
from mlsm_py.errors import BuildError
from mlsm_py.flow.aliases import promote, rollback
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_retrain, run_train
from mlsm_py.flow.session import Session
from mlsm_py.project import Project
from mlsm_py.registry import store
from tests.conftest import PG_DSN_VAR, _missing
from tests.helpers import copy_project

pytestmark = pytest.mark.dbt
ROWS = 3000
TOL = 1e-9
PG_ENV = ("MLSM_PG_HOST", "MLSM_PG_PORT", "MLSM_PG_USER", "MLSM_PG_PASSWORD", "MLSM_PG_DATABASE")


def _definitions():
    """The demo's definitions, with segments small enough to get their own fits here and
    fewer trees (the same kinds of model, in less time)."""
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import RandomForestClassifier

    from models_py import PROJECT

    out = []
    for m in PROJECT.models:
        est = m.estimator
        last = est.steps[-1][1]
        if isinstance(last, RandomForestClassifier | LGBMClassifier):
            est = est.set_params(model__n_estimators=20)
        more = {"segment_min_rows": 400} if m.segments else {}
        out.append(dataclasses.replace(m, estimator=est, **more))
    return dataclasses.replace(PROJECT, models=out)


@pytest.fixture(scope="module")
def pg_database():
    """A database of its own on the CI server, its connection in the profile's env vars."""
    dsn = os.environ.get(PG_DSN_VAR)
    if not dsn:
        _missing(f"{PG_DSN_VAR} is not set; .ci/run starts PostgreSQL and sets it")
    import psycopg2
    from psycopg2.extensions import parse_dsn

    parts = parse_dsn(dsn)
    name = f"mlsm_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    env = {
        "MLSM_PG_HOST": parts.get("host", "127.0.0.1"),
        "MLSM_PG_PORT": parts.get("port", "5432"),
        "MLSM_PG_USER": parts.get("user", ""),
        "MLSM_PG_PASSWORD": parts.get("password", ""),
        "MLSM_PG_DATABASE": name,
    }
    saved = {k: os.environ.get(k) for k in PG_ENV}
    os.environ.update(env)
    yield name
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    admin.cursor().execute(f"drop database if exists {name} with (force)")
    admin.close()


def _session(tmp, target: str, defs) -> Session:
    dbt_dir = copy_project(tmp)
    p = Project(tmp, "tests:defs", dbt_dir, tmp / "wh" / "mlsm.duckdb", target, _definitions=defs)
    return Session(p, say=lambda _: None, actor="tester")


def _load(s: Session, table: pa.Table) -> None:
    t = s.project.target
    con = t.connect()
    try:
        load_leads(con, table, target=t)
    finally:
        con.close()


def _rows(s: Session, sql: str) -> list[tuple]:
    con = s.project.target.connect()
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


SCORES = (
    "select lead_id, model_name, role, fit_id, segment, fallback, score, percentile, decile, "
    "reason_1, reason_1_contribution, reason_2, reason_3, reason_4 from published.scores "
    "order by lead_id, model_name, role"
)
WINNERS = (
    "select lead_id, summary_model, winning_model, winning_fit_id, arm, score, percentile, "
    "decile from published.winners order by lead_id, summary_model"
)
CALL_LIST = (
    "select call_rank, lead_id, winning_model, score, reason_1, reason_1_text "
    "from published.call_list order by call_rank"
)
DECISIONS = (
    "select model_name, coalesce(segment, ''), action, outcome, from_fit, to_fit, rule "
    "from mlsm_registry.decisions order by model_name, coalesce(segment, ''), decided_at"
)
COMPARED = (
    "select d.model_name, coalesce(d.segment, ''), m.role, m.fit_id, m.metric, m.value "
    "from mlsm_registry.decision_metrics m join mlsm_registry.decisions d "
    "using (decision_id) order by 1, 2, d.decided_at, 3, 5"
)


def _snapshot(s: Session) -> dict[str, list[tuple]]:
    return {
        "scores": _rows(s, SCORES),
        "winners": _rows(s, WINNERS),
        "call_list": _rows(s, CALL_LIST),
        "decisions": _rows(s, DECISIONS),
        "compared": _rows(s, COMPARED),
    }


def _lifecycle(tmp, target: str) -> dict:
    """Day one (train, build), three weeks later (outcomes and new leads; retrain), and a
    manual move and its rollback; a snapshot after each."""
    s = _session(tmp, target, _definitions())
    _load(s, generate_leads(ROWS, 11))
    run_train(s)
    run_build(s)
    day_one = _snapshot(s)
    newer = generate_leads(
        ROWS // 6,
        12,
        start=START + np.timedelta64(DAYS, "D"),
        days=21,
        first_id=ROWS + 1,
        double_counted=0.4,
        outcomes="none",
    )
    _load(s, pa.concat_tables([generate_leads(ROWS, 11, outcomes="all"), newer]))
    run_retrain(s)
    retrained = _snapshot(s)
    # A manual promotion of lead_logreg's challenger (or, if the retrain promoted it, a
    # rollback of that), then a rollback: the champion returns, two audit rows more.
    with s.registry() as con:
        before = store.aliases(con, "lead_logreg").get(store.CHAMPION)
        challenger = store.aliases(con, "lead_logreg").get(store.CHALLENGER)
    if challenger is not None:
        promote(s, "lead_logreg")
    else:
        rollback(s, "lead_logreg")
    with s.registry() as con:
        moved = store.aliases(con, "lead_logreg").get(store.CHAMPION)
    run_build(s)
    after_move = _snapshot(s)
    rollback(s, "lead_logreg")
    with s.registry() as con:
        back = store.aliases(con, "lead_logreg").get(store.CHAMPION)
    run_build(s)
    return {
        "session": s,
        "day_one": day_one,
        "retrained": retrained,
        "after_move": after_move,
        "final": _snapshot(s),
        "moves": (before, moved, back),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pg_database):
    return {
        "duckdb": _lifecycle(tmp_path_factory.mktemp("duck"), "duckdb"),
        "postgres": _lifecycle(tmp_path_factory.mktemp("pg"), "postgres"),
    }


def _same(a: list[tuple], b: list[tuple], what: str) -> None:
    """Row by row: floats within TOL, everything else equal."""
    assert len(a) == len(b), f"{what}: {len(a)} rows on DuckDB, {len(b)} on PostgreSQL"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for j, (u, v) in enumerate(zip(x, y, strict=True)):
            if isinstance(u, float) or isinstance(v, float):
                if u is None or v is None or (math.isnan(u) and math.isnan(v)):
                    assert u is v or (u == u) is (v == v), f"{what} row {i} col {j}: {u} != {v}"
                    continue
                assert abs(u - v) <= TOL, f"{what} row {i} col {j}: {u} vs {v}"
            else:
                assert u == v, f"{what} row {i} col {j}: {u!r} on DuckDB, {v!r} on PostgreSQL"


@pytest.mark.parametrize("step", ["day_one", "retrained", "after_move", "final"])
def test_published_rows_are_the_same_on_both(runs, step):
    duck, pg = runs["duckdb"][step], runs["postgres"][step]
    assert duck["scores"] and duck["winners"] and duck["call_list"]
    for table in ("scores", "winners", "call_list"):
        _same(duck[table], pg[table], f"{step}: published.{table}")


@pytest.mark.parametrize("step", ["retrained", "final"])
def test_decision_rows_are_the_same_on_both(runs, step):
    duck, pg = runs["duckdb"][step], runs["postgres"][step]
    assert duck["decisions"], "the retrain recorded no decision"
    _same(duck["decisions"], pg["decisions"], f"{step}: decisions")
    _same(duck["compared"], pg["compared"], f"{step}: decision_metrics")


def test_the_demo_scores_in_sql_on_postgres_with_segment_fits(runs):
    pg = runs["postgres"]
    s = pg["session"]
    routes = _rows(s, "select distinct route, dialect from mlsm_registry.fits")
    assert routes == [("sql", "postgres")]
    segs = {r[4] for r in pg["day_one"]["scores"] if r[1] == "lead_lgbm" and not r[5]}
    assert len(segs) >= 2, "the segmented model scored no record by a segment fit"
    header = (s.project.dbt_dir / "models" / "scores" / "score__lead_forest.sql").read_text()
    assert "postgres dialect" in header.splitlines()[3]


def test_promotion_and_rollback_leave_audit_rows_on_postgres(runs):
    pg = runs["postgres"]
    before, moved, back = pg["moves"]
    assert moved != before and back == before
    actions = [r[2:4] for r in pg["final"]["decisions"] if r[0] == "lead_logreg" and not r[1]]
    assert actions[-1] == ("rollback", "rolled_back")
    fits = {
        r[3] for r in pg["after_move"]["scores"] if r[1] == "lead_logreg" and r[2] == "champion"
    }
    assert fits == {moved}
    fits = {r[3] for r in pg["final"]["scores"] if r[1] == "lead_logreg" and r[2] == "champion"}
    assert fits == {back}


def test_a_failing_check_on_postgres_leaves_published_tables(runs):
    s = runs["postgres"]["session"]
    before = _snapshot(s)
    published = _rows(s, "select count(*) from mlsm_registry.builds where status = 'published'")
    con = s.project.target.connect()
    try:
        con.execute("update raw.leads set visits = -3 where lead_id = 7")
    finally:
        con.close()
    with pytest.raises(BuildError) as err:
        run_build(s)
    assert "visits" in str(err.value) and "-3" in str(err.value)
    assert _snapshot(s) == before
    last = _rows(s, "select status, failed_checks from mlsm_registry.builds order by started_at")
    assert last[-1][0] == "failed" and "visits" in last[-1][1]
    assert _rows(s, "select count(*) from mlsm_registry.builds where status = 'published'") == (
        published
    )

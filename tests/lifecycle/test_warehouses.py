"""One project, one data set, two warehouses, driven as a user drives it: `mlsm demo` (load,
train, build, three weeks later, build), `mlsm retrain`, `mlsm promote`, `mlsm rollback` and
`mlsm build`, once with the DuckDB target and once with `--target postgres` (a database the
CI server lacks, created by the demo). The published rows and the decision rows are compared
row by row; then, on PostgreSQL, a failing check must leave the published tables as they were,
and a run elsewhere holding the database must stop the next one.

Scores agree within 1e-9 (the parity tolerance); everything else (keys, fits, arms, winners,
reasons, bands, decisions) must be identical."""

from __future__ import annotations

import math
import os
import uuid

import pytest

from mlsm_py import project
from mlsm_py.errors import BuildError
from mlsm_py.flow.aliases import rollback
from mlsm_py.flow.build import run_build
from mlsm_py.flow.session import Session
from mlsm_py.registry import store
from tests.conftest import PG_DSN_VAR, _missing
from tests.helpers import demo_project, mlsm

pytestmark = pytest.mark.dbt
ROWS = 2500
TOL = 1e-9
PG_ENV = ("MLSM_PG_HOST", "MLSM_PG_PORT", "MLSM_PG_USER", "MLSM_PG_PASSWORD", "MLSM_PG_DATABASE")

# The demo's definitions with fewer trees and segments small enough to get fits of their own
# at this size: the same kinds of model, in less time. Written into each test project.
LIGHT_DEFS = """
import dataclasses

from lightgbm import LGBMClassifier
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from models_py import PROJECT as DEMO

_TREES = RandomForestClassifier | ExtraTreesClassifier | LGBMClassifier


def _light(m):
    est = m.estimator
    if isinstance(est.steps[-1][1], _TREES):
        est = est.set_params(model__n_estimators=10)
    more = {"segment_min_rows": 150, "segment_min_positives": 10} if m.segments else {}
    return dataclasses.replace(m, estimator=est, **more)


PROJECT = dataclasses.replace(DEMO, models=[_light(m) for m in DEMO.models])
"""


@pytest.fixture(scope="module")
def pg_database():
    """A fresh database name on the CI server (the demo creates it), its connection in the
    profile's env vars."""
    dsn = os.environ.get(PG_DSN_VAR)
    if not dsn:
        _missing(f"{PG_DSN_VAR} is not set; .ci/run starts PostgreSQL and sets it")
    import psycopg2
    from psycopg2.extensions import parse_dsn

    parts = parse_dsn(dsn)
    name = f"mlsm_{uuid.uuid4().hex[:10]}"
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
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"drop database if exists {name} with (force)")
    admin.close()


def _project(tmp) -> object:
    root = demo_project(tmp)
    (root / "light_defs.py").write_text(LIGHT_DEFS)
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace("models_py:PROJECT", "light_defs:PROJECT"))
    return root


def _session(root, target: str) -> Session:
    return Session(project.load(root, target=target), say=lambda _: None, actor="tester")


def _rows(s: Session, sql: str) -> list[tuple]:
    con = s.project.target.connect()
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


def _run(root, target: str, *args: str):
    out = mlsm(*args, "--target", target, cwd=root)
    assert out.returncode == 0, (args, out.stderr[-3000:])
    assert "Traceback" not in out.stderr
    return out.stdout


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
    """The demo, a retrain and (on PostgreSQL) a manual move, its rollback and a build; a
    snapshot after each."""
    root = _project(tmp)
    demo = _run(root, target, "demo", "--rows", str(ROWS))
    s = _session(root, target)
    after_demo = _snapshot(s)
    _run(root, target, "retrain")
    retrained = _snapshot(s)
    out = {"session": s, "demo_output": demo, "demo": after_demo, "retrained": retrained}
    if target == "duckdb":  # the manual moves are compared by their audit rows, on PostgreSQL
        return out
    # A manual promotion of lead_logreg's challenger (or, if the retrain promoted it, a
    # rollback of that), then a rollback: two audit rows more, and the next build publishes
    # the champion the rollback restored.
    with s.registry() as con:
        before = store.aliases(con, "lead_logreg").get(store.CHAMPION)
        challenger = store.aliases(con, "lead_logreg").get(store.CHALLENGER)
    _run(root, target, "promote" if challenger else "rollback", "lead_logreg")
    with s.registry() as con:
        moved = store.aliases(con, "lead_logreg").get(store.CHAMPION)
    _run(root, target, "rollback", "lead_logreg")
    with s.registry() as con:
        back = store.aliases(con, "lead_logreg").get(store.CHAMPION)
    _run(root, target, "build")
    return {**out, "final": _snapshot(s), "moves": (before, moved, back)}


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
                where = f"{what} row {i} col {j}: {u!r} on DuckDB, {v!r} on PostgreSQL"
                if u is None or v is None:  # NULL on one side only is a difference
                    assert u is None and v is None, where
                elif math.isnan(u) or math.isnan(v):
                    assert math.isnan(u) and math.isnan(v), where
                else:
                    assert abs(u - v) <= TOL, where
            else:
                assert u == v, f"{what} row {i} col {j}: {u!r} on DuckDB, {v!r} on PostgreSQL"


@pytest.mark.parametrize("step", ["demo", "retrained"])
def test_published_rows_are_the_same_on_both(runs, step):
    duck, pg = runs["duckdb"][step], runs["postgres"][step]
    assert duck["scores"] and duck["winners"] and duck["call_list"]
    for table in ("scores", "winners", "call_list"):
        _same(duck[table], pg[table], f"{step}: published.{table}")


def test_decision_rows_are_the_same_on_both(runs):
    duck, pg = runs["duckdb"]["retrained"], runs["postgres"]["retrained"]
    step = "retrained"
    assert duck["decisions"], "the retrain recorded no decision"
    _same(duck["decisions"], pg["decisions"], f"{step}: decisions")
    _same(duck["compared"], pg["compared"], f"{step}: decision_metrics")


def test_mlsm_demo_target_postgres_end_to_end(runs, pg_database):
    """One command, as the README says: the database is created, the demo's leads loaded into
    it, trained, built and published there, every model in SQL."""
    pg = runs["postgres"]
    text = pg["demo_output"]
    assert f"PostgreSQL database {pg_database} on" in text
    assert "(dbt target postgres, created)" in text
    assert text.count("published run") == 2 and "readers: query published.* in" in text
    assert "sql route" in text and "python route" not in text
    assert "realised: lead_winner on" in text
    top = text.split("top of published.call_list")[1].split("the SQL")[0].strip().splitlines()[2:]
    printed = [(int(t.split()[0]), int(t.split()[1])) for t in top]
    assert printed == [r[:2] for r in pg["demo"]["call_list"][:5]]
    s = pg["session"]
    routes = _rows(s, "select distinct route, dialect from mlsm_registry.fits")
    assert routes == [("sql", "postgres")]
    segs = {r[4] for r in pg["demo"]["scores"] if r[1] == "lead_lgbm" and not r[5]}
    assert len(segs) >= 2, f"segment fits scored only {segs}"
    header = (s.project.dbt_dir / "models" / "scores" / "score__lead_forest.sql").read_text()
    assert "postgres dialect" in header.splitlines()[3]


def test_promotion_and_rollback_leave_audit_rows_on_postgres(runs):
    pg = runs["postgres"]
    before, moved, back = pg["moves"]
    assert moved != before and back == before
    rows = [r for r in pg["final"]["decisions"] if r[0] == "lead_logreg" and not r[1]]
    assert [r[2:4] for r in rows[-2:]][-1] == ("rollback", "rolled_back")
    assert (rows[-2][4], rows[-2][5]) == (before, moved)  # the move, then back
    assert (rows[-1][4], rows[-1][5]) == (moved, back)
    scored = {r[3] for r in pg["final"]["scores"] if r[1:3] == ("lead_logreg", "champion")}
    assert scored == {back}


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


def test_a_run_on_another_machine_holds_the_database(runs):
    """The local file lock cannot see a run elsewhere; the database's advisory lock does."""
    import psycopg2

    from mlsm_py.flow.lock import LockedError
    from mlsm_py.warehouse.targets import _LOCK_KEY

    s = runs["postgres"]["session"]
    before = _snapshot(s)["decisions"]
    other = psycopg2.connect(s.project.target.dsn())  # "another machine": its own session
    try:
        other.cursor().execute("select pg_advisory_lock(%s)", [_LOCK_KEY])
        for verb in (lambda: run_build(s), lambda: rollback(s, "lead_logreg")):
            with pytest.raises(LockedError, match="another mlsm run holds PostgreSQL database"):
                verb()
    finally:
        other.close()
    assert _snapshot(s)["decisions"] == before

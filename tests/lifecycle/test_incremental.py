"""Incremental scoring (issue 15, item 1): a build scores only records new or changed since
the last publication, and every record by a scorer whose SQL changed (a promotion, a
rollback); the published rows equal a full refresh's after inserts, updates, a failed batch,
a promotion and a rollback. Real dbt builds on a real DuckDB file, one SQL-route and one
Python-route model; what should have been scored is derived from the edits, not written down.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import duckdb
import pytest

from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import BuildError
from mlsm_py.flow.aliases import promote, rollback
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_retrain
from mlsm_py.flow.readers import readers_file
from mlsm_py.spec import Definitions
from mlsm_py.spec_summary import CallList, SummaryModel
from tests.helpers import build_project, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
ROWS = 2500
PUBLISHED = ("scores", "winners", "call_list")


def _defs(variant: str) -> Definitions:
    base = make(variant)
    a, d = base.models
    summary = SummaryModel(
        "lead_winner", ("lead_a", "lead_d"), call_list=CallList("call_list", ("country",))
    )
    d = dataclasses.replace(d, scoring_path="python")  # the rows reach it through a view
    return dataclasses.replace(base, models=[a, d], summaries=[summary])


def _edit(wh, *sql: str) -> None:
    con = duckdb.connect(str(wh))
    try:
        for q in sql:
            con.execute(q)
    finally:
        con.close()


def _rows(wh, table: str) -> list[tuple]:
    """A published table's rows, every column but run_id (the run that published it)."""
    cols = [
        c
        for (c,) in query(
            wh,
            "select column_name from information_schema.columns where table_schema = "
            "'published' and table_name = ? order by ordinal_position",
            [table],
        )
        if c != "run_id"
    ]
    return query(wh, f"select {', '.join(cols)} from published.{table} order by all")


def _published(wh) -> dict[str, list[tuple]]:
    return {t: _rows(wh, t) for t in PUBLISHED}


def _scored(wh, model: str) -> set[int]:
    """The keys the model's score table (this build's fresh rows) holds."""
    return {k for (k,) in query(wh, f"select lead_id from audit.score__{model}")}


def _open(wh, ids) -> set[int]:
    got = query(
        wh,
        "select lead_id from lead_features where converted is null and lead_id in "
        f"({', '.join(map(str, ids))})",
    )
    return {k for (k,) in got}


def _readers_agree(wh) -> bool:
    """The readers' copy holds published.scores row for row, run ids included."""
    q = "select * from published.scores order by all"
    copy = duckdb.connect(str(readers_file(wh)), read_only=True)
    try:
        theirs = copy.execute(q).fetchall()
    finally:
        copy.close()
    return theirs == query(wh, q) and len(theirs) > 0


def _unit_tests(s) -> list[str]:
    """The dbt unit tests the last build ran, and how each ended."""
    results = json.loads((s.project.dbt_dir / "target" / "run_results.json").read_text())
    return sorted(
        f"{r['unique_id'].split('.')[-1]}: {r['status']}"
        for r in results["results"]
        if r["unique_id"].startswith("unit_test.")
    )


def _full_refresh(s, tmp) -> dict[str, list[tuple]]:
    """The same warehouse and project copied, built with --full-refresh."""
    shutil.copytree(s.project.root, tmp, ignore=shutil.ignore_patterns("*.lock", "target"))
    s2 = session(tmp, s.defs, dbt_dir=tmp / "dbt_project")
    run_build(s2, full=True)
    return _published(s2.project.warehouse)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Day one, then: a batch of inserts and updates; a build with no change; a failing
    batch and its fix; a promotion; a rollback. What each build published and scored."""
    root = tmp_path_factory.mktemp("incremental")
    s = session(root / "p", _defs("weak"))
    wh = s.project.warehouse
    out: dict = {"s": s}
    build_project(s, generate_leads(ROWS, seed=8))
    (top,) = query(wh, "select max(lead_id) from raw.leads")[0]
    open_ids = [r for (r,) in query(wh, "select lead_id from published.call_list order by 1")]
    ids = ", ".join
    new = [k + top for k in open_ids[:20]]
    _edit(
        wh,
        f"insert into raw.leads select * replace (lead_id + {top} as lead_id) from raw.leads "
        f"where lead_id in ({ids(map(str, open_ids[:20]))})",
        "update raw.leads set converted = true where lead_id in "
        f"({ids(map(str, open_ids[20:30]))})",
        f"update raw.leads set visits = visits + 7 where lead_id in "
        f"({ids(map(str, open_ids[30:45]))})",
    )
    out["batch"] = run_build(s)
    out["batch_unit_tests"] = _unit_tests(s)
    out["batch_scored"] = {m: _scored(wh, m) for m in ("lead_a", "lead_d")}
    out["batch_expected"] = set(new) | set(open_ids[30:45])
    out["batch_published"] = _published(wh)
    out["readers"] = [_readers_agree(wh)]
    out["batch_run_ids"] = dict(
        query(
            wh,
            "select run_id = ?, count(*) from published.scores group by 1",
            [out["batch"]["run_id"]],
        )
    )
    out["batch_full"] = _full_refresh(s, root / "full_1")

    history = query(wh, "select count(*) from history.scores")[0][0]
    out["idle"] = run_build(s)
    out["idle_scored"] = {m: _scored(wh, m) for m in ("lead_a", "lead_d")}
    out["idle_history"] = (history, query(wh, "select count(*) from history.scores")[0][0])
    out["idle_published"] = _published(wh)
    out["idle_run_ids"] = query(
        wh, "select count(*) from published.scores where run_id = ?", [out["idle"]["run_id"]]
    )[0][0]

    late = [k + 2 * top for k in open_ids[45:55]]
    bad = open_ids[60]
    (visits,) = query(wh, f"select visits from raw.leads where lead_id = {bad}")[0]
    _edit(
        wh,
        f"insert into raw.leads select * replace (lead_id + {2 * top} as lead_id) from raw.leads "
        f"where lead_id in ({ids(map(str, open_ids[45:55]))})",
        f"update raw.leads set visits = -3 where lead_id = {bad}",
    )
    state = query(wh, "select * from mlsm_state.lead_features__rows order by all")
    with pytest.raises(BuildError, match="visits"):
        run_build(s)
    out["failed"] = (
        _published(wh),
        state == query(wh, "select * from mlsm_state.lead_features__rows order by all"),
    )
    _edit(wh, f"update raw.leads set visits = {visits + 1} where lead_id = {bad}")
    out["fixed"] = run_build(s)
    out["readers"].append(_readers_agree(wh))
    out["fixed_scored"] = _scored(wh, "lead_a")
    out["fixed_expected"] = set(late) | {bad}
    out["late_history"] = query(
        wh,
        f"select lead_id, model_name, count(*) from history.scores where lead_id in "
        f"({ids(map(str, late))}) group by all",
    )
    out["before_promotion"] = _published(wh)

    s.project._definitions = _defs("better")
    # The factory keeps this challenger (not better); a person promotes it anyway.
    (retrained,) = run_retrain(s)
    out["retrained_scored"] = {m: _scored(wh, m) for m in ("lead_a", "lead_d")}
    out["promotion"] = promote(s, "lead_a", retrained.challenger_fit)
    out["promoted"] = run_build(s)
    out["promoted_unit_tests"] = _unit_tests(s)
    out["promoted_scored"] = {m: _scored(wh, m) for m in ("lead_a", "lead_d")}
    out["population"] = {k for (k,) in query(wh, "select lead_id from published.call_list")}
    rollback(s, "lead_a")
    out["rolled_back"] = run_build(s)
    out["rolled_back_scored"] = {m: _scored(wh, m) for m in ("lead_a", "lead_d")}
    out["rolled_back_published"] = _published(wh)
    out["readers"].append(_readers_agree(wh))
    out["final_full"] = _full_refresh(s, root / "full_2")
    # The next build on that copy: a full refresh must not cost it a re-parse of the project.
    s3 = session(root / "full_2", s.defs, dbt_dir=root / "full_2" / "dbt_project")
    log = s3.project.logs_dir / "dbt.log"
    before = log.read_text().count("Unable to do partial parsing")
    run_build(s3)
    out["reparsed_after_full"] = log.read_text().count("Unable to do partial parsing") - before
    return out


def test_a_batch_scores_only_new_and_changed_records(runs):
    expected = _open(runs["s"].project.warehouse, runs["batch_expected"])
    assert len(expected) == 35  # 20 new, 15 with more visits; the 10 converted are out
    assert runs["batch_scored"] == {"lead_a": expected, "lead_d": expected}
    assert runs["batch"]["changed_rows"] == {
        "lead_features": {"new": 20, "changed": 25, "gone": 0}  # 10 converted, 15 visits
    }
    assert runs["batch"]["rescored"] == []
    # Published by replacing only those rows; they carry this run's id, the others the run
    # that scored them.
    assert runs["batch"]["merged"] == ["scores"] and runs["batch"]["readers_merged"]
    assert runs["batch_run_ids"][True] == 2 * len(expected)
    assert runs["batch_run_ids"][False] == len(runs["batch_published"]["scores"]) - 2 * len(
        expected
    )


def test_incremental_publishes_what_a_full_refresh_publishes(runs):
    assert runs["batch_published"] == runs["batch_full"]
    assert runs["rolled_back_published"] == runs["final_full"]
    for t in PUBLISHED:
        assert runs["final_full"][t], t  # not vacuous


def test_a_build_with_no_change_scores_nothing_and_changes_nothing(runs):
    assert runs["idle_scored"] == {"lead_a": set(), "lead_d": set()}
    assert runs["idle"]["changed_rows"] == {"lead_features": {"new": 0, "changed": 0, "gone": 0}}
    before, after = runs["idle_history"]
    assert before == after
    assert runs["idle_published"] == runs["batch_published"]
    assert runs["idle_run_ids"] == 0  # nothing scored: no row is the idle build's


def test_a_failed_batch_publishes_nothing_and_the_next_scores_it_once(runs):
    published, state_kept = runs["failed"]
    assert published == runs["idle_published"] and state_kept
    wh = runs["s"].project.warehouse
    assert runs["fixed_scored"] == _open(wh, runs["fixed_expected"])
    per_key = runs["late_history"]  # one history row per record and model, not two
    assert len(per_key) == 20 and {n for *_, n in per_key} == {1}


def test_a_promotion_and_a_rollback_rescore_that_model_only(runs):
    population = runs["population"]
    # A retrain that keeps its champion publishes the same champions: nothing rescored.
    assert runs["retrained_scored"] == {"lead_a": set(), "lead_d": set()}
    assert "is the champion" in runs["promotion"]
    assert runs["promoted"]["rescored"] == ["lead_a (champion)"]
    assert runs["promoted_scored"] == {"lead_a": population, "lead_d": set()}
    assert runs["rolled_back"]["rescored"] == ["lead_a (champion)"]
    assert runs["rolled_back_scored"] == {"lead_a": population, "lead_d": set()}
    # Back to the first champion: the rows it published before, value for value.
    assert runs["rolled_back_published"]["scores"] == runs["before_promotion"]["scores"]


def test_the_readers_copy_follows_each_incremental_publication(runs):
    assert runs["readers"] == [True, True, True]


def test_unit_tests_rerun_only_when_the_sql_they_test_changed(runs):
    # The batch runs the SQL the first build's unit tests passed on: they are left out.
    assert runs["batch"]["unit_tests"] is False and runs["batch_unit_tests"] == []
    assert runs["idle"]["unit_tests"] is False
    # A promotion rewrites the score models: both rules are tested again, and pass.
    assert runs["promoted"]["unit_tests"] is True
    assert runs["promoted_unit_tests"] == ["score_bands_rule: pass", "winner_rule: pass"]


def test_a_full_refresh_costs_the_next_build_no_reparse(runs):
    # A --vars flag that differed from the last run's made dbt re-parse the whole project
    # after every full refresh; mlsm.full_refresh() reads an environment variable instead.
    assert runs["reparsed_after_full"] == 0

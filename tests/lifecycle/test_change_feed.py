"""The change feed of a call list (issue 15, item 2): every publication appends what changed
(new, updated, removed) to history.<call list>__changes with its run id; a failed build
appends nothing and the next good run reports those changes once; `mlsm export` writes one
file per run, atomically, byte for byte the same when exported again, readable by DuckDB and
pandas. Real dbt builds on a real DuckDB file; expectations are computed from the published
call lists before and after, not written down."""

from __future__ import annotations

import dataclasses

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import BuildError
from mlsm_py.flow import export as feed_export
from mlsm_py.flow.build import run_build
from mlsm_py.spec import Definitions
from mlsm_py.spec_summary import CallList, SummaryModel
from tests.helpers import build_project, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
FEED = "history.call_list__changes"
ROWS = 2500


def _defs() -> Definitions:
    base = make("weak")
    summary = SummaryModel(
        "lead_winner", ("lead_a", "lead_d"), call_list=CallList("call_list", ("country",))
    )
    return dataclasses.replace(base, summaries=[summary])


def _call_list(wh) -> pd.DataFrame:
    con = duckdb.connect(str(wh))
    try:
        return con.execute("select * from published.call_list").df().set_index("lead_id")
    finally:
        con.close()


def _feed(wh, run_id: str | None = None) -> pd.DataFrame:
    where = "" if run_id is None else f" where change_run_id = '{run_id}'"
    con = duckdb.connect(str(wh))
    try:
        return con.execute(f"select * from {FEED}{where}").df()
    finally:
        con.close()


def _expected(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, set[int]]:
    compared = [c for c in new.columns if c not in ("call_rank", "run_id")]
    both = old.index.intersection(new.index)
    a, b = old.loc[both, compared], new.loc[both, compared]
    differs = ~((a == b) | (a.isna() & b.isna())).all(axis=1)
    return {
        "new": set(new.index.difference(old.index)),
        "removed": set(old.index.difference(new.index)),
        "updated": set(both[differs.to_numpy()]),
    }


def _got(feed: pd.DataFrame) -> dict[str, set[int]]:
    return {c: set(feed.loc[feed.change == c, "lead_id"]) for c in ("new", "removed", "updated")}


def _edit(wh, sql: str) -> None:
    con = duckdb.connect(str(wh))
    try:
        con.execute(sql)
    finally:
        con.close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """Four published builds (the last with no change) and a failed one; the call list after
    each."""
    s = session(tmp_path_factory.mktemp("feed"), _defs())
    wh = s.project.warehouse
    first = build_project(s, generate_leads(ROWS, seed=8))
    lists = [_call_list(wh)]
    runs = [first["run_id"]]
    (top,) = query(wh, "select max(lead_id) from raw.leads")[0]
    open_ids = [r for (r,) in query(wh, "select lead_id from published.call_list order by 1")]
    assert len(open_ids) > 60
    # Next batch: 20 new open leads (copies of open ones under new keys), 10 converted
    # (they leave the list), 15 with more visits (their scores move).
    _edit(
        wh,
        f"insert into raw.leads select * replace (lead_id + {top} as lead_id) from raw.leads "
        f"where lead_id in ({', '.join(map(str, open_ids[:20]))})",
    )
    _edit(
        wh,
        f"update raw.leads set converted = true where lead_id in "
        f"({', '.join(map(str, open_ids[20:30]))})",
    )
    _edit(
        wh,
        f"update raw.leads set visits = visits + 7 where lead_id in "
        f"({', '.join(map(str, open_ids[30:45]))})",
    )
    runs.append(run_build(s)["run_id"])
    lists.append(_call_list(wh))
    # A bad batch: 10 more new leads, and one row breaking the visits contract.
    _edit(
        wh,
        f"insert into raw.leads select * replace (lead_id + {2 * top} as lead_id) from raw.leads "
        f"where lead_id in ({', '.join(map(str, open_ids[45:55]))})",
    )
    bad = open_ids[60]
    _edit(wh, f"update raw.leads set visits = -3 where lead_id = {bad}")
    feed_before = _feed(wh)
    with pytest.raises(BuildError, match="visits"):
        run_build(s)
    failed = {"feed": _feed(wh), "call_list": _call_list(wh), "before": feed_before}
    _edit(wh, f"update raw.leads set visits = 1 where lead_id = {bad}")
    runs.append(run_build(s)["run_id"])
    lists.append(_call_list(wh))
    runs.append(run_build(s)["run_id"])  # nothing changed
    lists.append(_call_list(wh))
    return s, runs, lists, failed, (top, bad)


def test_first_publication_lists_every_record_as_new(fed):
    s, runs, lists, _, _ = fed
    feed = _feed(s.project.warehouse, runs[0])
    assert set(feed.change) == {"new"}
    assert set(feed.lead_id) == set(lists[0].index) and len(feed) == len(lists[0])


def test_each_run_lists_what_changed_on_the_call_list(fed):
    s, runs, lists, _, (top, _) = fed
    for i in (1, 2, 3):
        got = _got(_feed(s.project.warehouse, runs[i]))
        want = _expected(lists[i - 1], lists[i])
        assert got == want, i
    second = _got(_feed(s.project.warehouse, runs[1]))
    assert len(second["new"]) == 20 and all(k > top for k in second["new"])
    assert len(second["removed"]) == 10  # converted: out of the population
    assert second["updated"]  # more visits moved their scores
    # A rank move alone is no update: every updated row differs beyond call_rank.
    feed = _feed(s.project.warehouse, runs[1])
    upd = feed[feed.change == "updated"].set_index("lead_id")
    assert (upd.score != lists[0].loc[upd.index, "score"]).any()
    # Removed rows carry their last published values, without a rank.
    rem = feed[feed.change == "removed"].set_index("lead_id")
    assert rem.call_rank.isna().all()
    assert (rem.score == lists[0].loc[rem.index, "score"]).all()
    # New and updated rows carry the new rank.
    live = feed[feed.change != "removed"].set_index("lead_id")
    assert (live.call_rank == lists[1].loc[live.index, "call_rank"]).all()


def test_a_failed_build_appends_nothing_and_the_next_reports_it_once(fed):
    s, runs, lists, failed, (top, _) = fed
    assert failed["feed"].equals(failed["before"])
    assert failed["call_list"].equals(lists[1])
    all_rows = _feed(s.project.warehouse)
    late = all_rows[all_rows.lead_id > 2 * top]
    assert len(late) == 10 and set(late.change) == {"new"}
    assert set(late.change_run_id) == {runs[2]}
    counts = all_rows.groupby(["change_run_id", "lead_id"]).size()
    assert counts.max() == 1  # one row per record and run


def test_export_writes_one_file_per_run_atomically_and_reproducibly(fed, tmp_path, monkeypatch):
    s, runs, _, _, _ = fed
    con = duckdb.connect(str(s.project.warehouse))
    try:
        done = feed_export.export(con, "call_list", "lead_id", tmp_path / "pq", None, "parquet")
        assert [e.run_id for e in done] == runs
        assert done[-1].rows == 0 and pd.read_parquet(done[-1].path).empty  # no change: a file
        names = [e.path.name for e in done]
        assert names == sorted(names) and all(runs[i] in n for i, n in enumerate(names))
        first_bytes = [e.path.read_bytes() for e in done]
        again = feed_export.export(con, "call_list", "lead_id", tmp_path / "pq", None, "parquet")
        assert not any(e.written for e in again)  # already there: left as they are
        redo = feed_export.export(
            con, "call_list", "lead_id", tmp_path / "pq", None, "parquet", overwrite=True
        )
        assert all(e.written for e in redo)
        assert [e.path.read_bytes() for e in redo] == first_bytes
        for e in done:
            via_duckdb = duckdb.sql(f"select * from read_parquet('{e.path}')").df()
            via_pandas = pd.read_parquet(e.path)
            feed = _feed(s.project.warehouse, e.run_id)
            assert len(via_duckdb) == len(via_pandas) == len(feed) == e.rows
            assert set(via_pandas.lead_id) == set(feed.lead_id)
        since = feed_export.export(con, "call_list", "lead_id", tmp_path / "s", runs[0], "csv")
        assert [e.run_id for e in since] == runs[1:]
        csv_bytes = [e.path.read_bytes() for e in since]
        for e in since:
            e.path.unlink()
        redo = feed_export.export(con, "call_list", "lead_id", tmp_path / "s", runs[0], "csv")
        assert [e.path.read_bytes() for e in redo] == csv_bytes
        back = pd.read_csv(since[0].path)
        assert len(back) == since[0].rows and set(back.change) <= {"new", "updated", "removed"}
        # Killed between writing and renaming: the final name never holds a partial file.
        target = tmp_path / "killed"

        def die(*_a, **_k):
            raise SystemExit("killed")

        monkeypatch.setattr(feed_export.os, "replace", die)
        with pytest.raises(SystemExit):
            feed_export.export(con, "call_list", "lead_id", target, None, "parquet")
        assert list(target.iterdir()) == []
    finally:
        con.close()


def test_parquet_bytes_depend_on_the_rows_only():
    t = pa.table({"lead_id": [1, 2], "change": ["new", "removed"], "score": [0.5, None]})
    assert feed_export._bytes(t, "parquet") == feed_export._bytes(t, "parquet")
    assert b"ARROW:schema" not in feed_export._bytes(t, "parquet")

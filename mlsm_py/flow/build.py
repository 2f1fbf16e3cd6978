"""`mlsm build`: score the data with the registered champions and challengers (no training),
check, and publish. Publication is one DuckDB transaction: the published tables, a retrain's
pending aliases and decisions, and the publication log row commit together or not at all."""

from __future__ import annotations

import time
from typing import Any

import duckdb
from sqlglot import exp

from mlsm_py.dbt import runner, writer
from mlsm_py.dbt.incremental_sql import PLAN
from mlsm_py.errors import BuildError, MlsmError
from mlsm_py.flow import changes, history, readers, state
from mlsm_py.flow.aliases import stale
from mlsm_py.flow.lock import hold
from mlsm_py.flow.readers import comment
from mlsm_py.flow.session import Session, sync_files, write_serving
from mlsm_py.registry import store
from mlsm_py.registry.schema import SCHEMA

AUDIT = "audit"
PUBLISHED = "published"


def build_features(s: Session) -> runner.BuildOutcome:
    """Staging, features and the input checks on them (data checker 1)."""
    relations = sorted({m.features for m in s.defs.models})
    return runner.build(s.dbt, [f"+{r}" for r in relations])


def _as_of(con: duckdb.DuckDBPyConnection, s: Session) -> Any:
    newest = []
    for m in s.defs.models:
        q = exp.select(exp.Max(this=exp.column(m.split.column, quoted=True))).from_(
            exp.to_table(m.features)
        )
        newest.append(con.execute(q.sql("duckdb")).fetchone()[0])
    newest = [n for n in newest if n is not None]
    return max(newest) if newest else None


def publish(
    con: duckdb.DuckDBPyConnection,
    s: Session,
    run_id: str,
    command: str,
    started: Any,
    full: bool = False,
    unit_tested: str | None = None,
) -> dict:
    """Replace the published tables from the audited ones, apply the run's pending registry
    changes and log the build: one transaction. `unit_tested`: what the unit tests that
    passed (now or at an earlier publication) ran on (`state.unit_tested`)."""
    key = s.defs.models[0].key
    as_of = _as_of(con, s)
    k = exp.column(key, quoted=True).sql("duckdb")
    with store.transaction(con):
        applied = store.apply_pending(con, run_id, s.actor)
        con.execute(f"create schema if not exists {PUBLISHED}")
        scored = con.execute(f"select count(distinct {k}) from {AUDIT}.scores").fetchone()[0]
        if store.table_exists(con, PUBLISHED, "scores"):
            new = con.execute(
                f"select count(distinct {k}) from {AUDIT}.scores where {k} not in "
                f"(select {k} from {PUBLISHED}.scores)"
            ).fetchone()[0]
        else:
            new = scored
        docs = writer.published_docs(s.defs)
        target = s.project.target
        finished = store.now()
        feed = {
            sm.call_list.name: changes.append(con, sm.call_list.name, key, run_id, finished)
            for sm in s.defs.summaries
            if sm.call_list is not None and store.table_exists(con, AUDIT, sm.call_list.name)
        }
        scope = state.scope(con, s.defs, full)
        previous = con.execute(
            f"select run_id from {SCHEMA}.builds where status = 'published' "
            "order by finished_at desc limit 1"
        ).fetchone()
        merged = []
        for name in writer.published_tables(s.defs):
            if not store.table_exists(con, AUDIT, name):
                continue
            if name == "scores" and state.merge_scores(con, scope["scores"], f"{PUBLISHED}.scores"):
                merged.append(name)  # the unchanged rows stay where they are
                continue
            for stmt in target.replace_table(
                con, f"{PUBLISHED}.{name}", f"select * from {AUDIT}.{name}"
            ):
                con.execute(stmt)
            comment(con, f"{PUBLISHED}.{name}", *docs.get(name, ("", {})))
        history.append_published(con, key, finished, scope)
        changed = state.publish(con, s.defs, full)
        if unit_tested is not None:
            state.record_unit_tests(con, unit_tested)
        rescored = _rescored(con)
        history.append_checks(con, run_id, "published", finished)
        for rel in sorted({m.features for m in s.defs.models}):
            n = con.execute(f"select count(*) from {exp.to_table(rel).sql('duckdb')}").fetchone()[0]
            store.record_volume(con, run_id, rel, n)
        row = {
            "run_id": run_id,
            "command": command,
            "actor": s.actor,
            "started_at": started,
            "finished_at": finished,
            "status": "published",
            "as_of": as_of,
            "rows_scored": scored,
            "rows_new": new,
            "failed_checks": None,
            "message": f"{applied} alias changes applied" if applied else None,
        }
        store.record_build(con, row)
    row["changes"] = feed
    row["changed_rows"] = changed
    row["rescored"] = rescored
    row["full_refresh"] = full
    row["merged"] = merged
    # What the readers' copy replaces in its scores, if it is the previous publication's.
    row["readers_merge"] = (
        (previous[0], scope["scores"]) if "scores" in merged and previous else None
    )
    return row


def _rescored(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The scorers that scored every record this build (their SQL changed)."""
    if not store.table_exists(con, AUDIT, PLAN):
        return []
    rows = con.execute(
        f"select model_name, role from {AUDIT}.{PLAN} where rescore_all order by 1, 2"
    ).fetchall()
    return [f"{m} ({r})" for m, r in rows]


def record_failure(s: Session, run_id: str, command: str, started: Any, err: Exception) -> None:
    failed = getattr(err, "failures", None)
    with s.registry() as con, store.transaction(con):
        if store.table_exists(con, history.HISTORY, "input_drift"):
            history.append_checks(con, run_id, "failed", store.now())
        store.record_build(
            con,
            {
                "run_id": run_id,
                "command": command,
                "actor": s.actor,
                "started_at": started,
                "finished_at": store.now(),
                "status": "failed",
                "as_of": None,
                "rows_scored": None,
                "rows_new": None,
                "failed_checks": "\n".join(failed) if failed else None,
                "message": (str(err).splitlines() or [type(err).__name__])[0][:500],
            },
        )


def build(
    s: Session, run_id: str | None = None, command: str = "build", full: bool = False
) -> dict:
    """dbt build of the whole project, then publication. `run_id`: a retrain's run whose
    pending aliases the build scores and, if it publishes, applies. Only records new or
    changed since the last publication are scored, and every record by a scorer whose SQL
    changed; `full` scores everything (the published rows are the same either way)."""
    started = store.now()
    own_run = run_id is None
    run_id = run_id or store.new_id()
    if own_run:
        with s.registry() as con:
            store.discard_pending(con)  # left by a killed retrain; the lock says none runs
            for line in sync_files(s, con):
                s.say(f"      {line} (rewritten from the registry)")
            if not store.aliases(con):
                raise MlsmError("no model has been trained in this warehouse; run `mlsm train`")
            for model, lines in stale(s, con).items():
                for line in lines:
                    s.say(f"      stale: {model}: {line}")
    with s.registry() as con:
        history.ensure(con, s.defs)  # the monitoring views read it
        state.ensure(con, s.defs)  # what incremental scoring compares with
        tested = state.unit_tested(s.project.dbt_dir, [runner.macro_package()])
        unit_tests = full or state.unit_tests_passed(con) != tested
    t0 = time.perf_counter()
    try:
        # Neither the run id nor a full refresh is a dbt var: a var that differs from the
        # last run's makes dbt re-parse the whole project (decision 0026).
        outcome = runner.build(s.dbt, run_id=run_id, unit_tests=unit_tests, full_refresh=full)
    except BuildError as e:
        record_failure(s, run_id, command, started, e)
        raise
    dbt_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    with s.registry() as con:
        row = publish(con, s, run_id, command, started, full, tested)
        row["unit_tests"] = unit_tests
        row["publish_seconds"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        # DuckDB admits one writer: readers get a copy. A server warehouse serves readers
        # the published schema itself, beside the next build (MVCC).
        row["readers_file"], row["readers_merged"] = (
            readers.export(
                con,
                s.project.warehouse,
                writer.published_tables(s.defs),
                writer.published_docs(s.defs),
                row["readers_merge"],
            )
            if s.project.target.readers_copy
            else (None, False)
        )
        row["readers_seconds"] = time.perf_counter() - t2
        if not own_run:  # a retrain's champions are applied now: serve them (a plain
            # build's manifest was written by sync_files above, from the same aliases; the
            # routed metrics it needs would be recomputed for nothing)
            write_serving(s, con)
        row["fallback"] = fallback_counts(con, s)
    row["dbt_seconds"] = dbt_s
    row["dbt_summary"] = outcome.summary()
    row["warnings"] = outcome.warnings
    return row


def fallback_counts(con, s: Session) -> dict[str, tuple[int, int, list]]:
    """Per segmented model: (records its champion scored, of them by the fallback, the
    levels that fell back), from the published scores."""
    names = [m.name for m in s.defs.models if m.segments]
    if not names or not store.table_exists(con, "published", "scores"):
        return {}
    rows = con.execute(
        "select model_name, count(*), count(*) filter (where fallback), "
        "array_agg(distinct coalesce(segment, 'NULL') order by coalesce(segment, 'NULL')) "
        "filter (where fallback) from published.scores where role = 'champion' "
        f"and model_name in ({', '.join('?' for _ in names)}) group by model_name "
        "order by model_name",
        names,
    ).fetchall()
    return {m: (n, f, levels or []) for m, n, f, levels in rows}


def scored_line(row: dict) -> str:
    """What this build scored: the changed records, and the scorers that scored all."""
    if row["full_refresh"]:
        return "scored every record (--full-refresh)"
    parts, any_change = [], False
    for rel, c in row["changed_rows"].items():
        any_change = any_change or any(c.values())
        parts.append(
            f"{rel}: {c['new']:,} new, {c['changed']:,} changed, {c['gone']:,} gone"
            if any(c.values())
            else f"{rel}: nothing new, changed or gone"
        )
    line = "since the last publication " + "; ".join(parts)
    if row["rescored"]:
        every = ", ".join(row["rescored"])
        those = "those, and " if any_change else ""
        return f"{line}; scored {those}every record by {every} (a changed scorer)"
    return line + ("; scored those" if any_change else "; nothing scored")


def fallback_lines(row: dict) -> list[str]:
    out = []
    for m, (n, f, levels) in row.get("fallback", {}).items():
        shown = ", ".join(levels[:8]) + (f" and {len(levels) - 8} more" if len(levels) > 8 else "")
        out.append(
            f"      {m}: {n - f:,} records by their segment's fit, {f:,} by the fallback"
            + (f" ({shown})" if f else "")
        )
    return out


def run_build(s: Session, full: bool = False) -> dict:
    """The `mlsm build` verb: under the warehouse lock, with progress output."""
    s.require_warehouse()
    with hold(s.project.state, "build", s.project.target):
        s.say(
            "[1/2] dbt build: staging -> features -> input checks -> scores -> winners -> "
            "score checks"
        )
        row = build(s, full=full)
        s.say(
            f"      dbt: {row['dbt_summary']} ({row['dbt_seconds']:.1f} s)"
            + ("" if row["unit_tests"] else "; unit tests not rerun: their SQL is unchanged")
        )
        s.say("      " + scored_line(row))
        for w in row["warnings"]:
            s.say(f"      warning: {w}")
        s.say(
            f"[2/2] published run {row['run_id']}: {row['rows_scored']:,} records scored "
            f"({row['rows_new']:,} new), data as of {row['as_of']:%Y-%m-%d %H:%M}"
            if row["as_of"]
            else f"[2/2] published run {row['run_id']}"
        )
        for line in fallback_lines(row):
            s.say(line)
        for name, counts in row.get("changes", {}).items():
            parts = ", ".join(f"{counts.get(c, 0):,} {c}" for c in ("new", "updated", "removed"))
            s.say(f"      {name} changes: {parts} (history.{changes.feed_name(name)})")
        if row["readers_file"]:
            s.say(f"      readers: {row['readers_file']} (never blocks a build)")
        else:
            s.say(f"      readers: query published.* in {s.project.target.describe()}")
    return row

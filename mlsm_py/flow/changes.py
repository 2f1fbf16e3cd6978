"""The change feed: what each publication changed in a call list, for a CRM sync job.

Every publication compares the audited call list it is about to publish with the published
one it replaces, in the same transaction, and appends the differences to
`history.<call list>__changes`, tagged with the run id and the publication time:

new       a record on the new list that was not on the old one (a new lead, or one that
          re-entered the population)
updated   a record on both whose published values changed: score, percentile, decile, the
          winner, its fit, the reasons or an attribute. A move in `call_rank` alone is not an
          update (one new lead near the top moves every rank below it); the new rank is on
          every new and updated row
removed   a record on the old list that is not on the new one (e.g. converted: it left the
          scoring population); the row holds its last published values, call_rank NULL

A failed build publishes nothing and appends nothing, so the next good run reports the same
changes once. `mlsm export` writes each run's rows to one file (see `flow.export`).
"""

from __future__ import annotations

from typing import Any

from mlsm_py.dbt.common import identifier as _q
from mlsm_py.registry import store

HISTORY = "history"
AUDIT = "audit"
PUBLISHED = "published"
# Columns of the call list that never count as a change.
NOT_COMPARED = ("call_rank", "run_id")
FEED_COLUMNS = [
    ("change_run_id", "varchar"),
    ("published_at", "timestamptz"),
    ("change", "varchar"),
]


def feed_name(call_list: str) -> str:
    return f"{call_list}__changes"


def runs_name(call_list: str) -> str:
    """One row per publication that wrote the feed, with its counts: a run that changed
    nothing is listed too, and runs published before the feed existed are not."""
    return f"{call_list}__changes_runs"


def ensure(con: Any, call_list: str) -> list[str]:
    """Create the feed table from the audited call list's columns, or add the columns a changed
    definition brought; returns the call list's columns in order."""
    cols = store.relation_columns(con, f"{AUDIT}.{call_list}")
    feed = f"{HISTORY}.{feed_name(call_list)}"
    con.execute(f"create schema if not exists {HISTORY}")
    con.execute(
        f"create table if not exists {HISTORY}.{runs_name(call_list)} (change_run_id varchar, "
        "published_at timestamptz, new bigint, updated bigint, removed bigint)"
    )
    if not store.table_exists(con, HISTORY, feed_name(call_list)):
        defs = ", ".join(f"{_q(n)} {t}" for n, t in [*FEED_COLUMNS, *cols])
        con.execute(f"create table {feed} ({defs})")
    else:
        have = {n for n, _ in store.relation_columns(con, feed)}
        for n, t in cols:
            if n not in have:  # older rows keep NULL there: nothing is lost
                con.execute(f"alter table {feed} add column {_q(n)} {t}")
    return [n for n, _ in cols]


def append(con: Any, call_list: str, key: str, run_id: str, published_at: Any) -> dict[str, int]:
    """Append this publication's changes (before `published.<call_list>` is replaced);
    {change: rows}."""
    cols = ensure(con, call_list)
    new_t, old_t = f"{AUDIT}.{call_list}", f"{PUBLISHED}.{call_list}"
    k = _q(key)
    names = ", ".join(_q(c) for c in cols)
    feed = f"{HISTORY}.{feed_name(call_list)}"
    target = f"insert into {feed} (change_run_id, published_at, change, {names}) "
    head = "select ?, ?, "
    params = [run_id, published_at]
    if not store.table_exists(con, PUBLISHED, call_list):
        con.execute(target + head + f"'new', {names} from {new_t}", params)
    else:
        old_cols = {n for n, _ in store.relation_columns(con, old_t)}
        compared = [c for c in cols if c not in NOT_COMPARED and c != key and c in old_cols]
        n_sel = ", ".join(f"n.{_q(c)}" for c in cols)
        o_sel = ", ".join(
            "cast(null as bigint)" if c == "call_rank" else f"o.{_q(c)}" if c in old_cols else
            "null" for c in cols
        )  # fmt: skip
        differs = " or ".join(f"n.{_q(c)} is distinct from o.{_q(c)}" for c in compared)
        con.execute(
            target + head + f"'new', {n_sel} from {new_t} n "
            f"where not exists (select 1 from {old_t} o where o.{k} = n.{k})",
            params,
        )
        if differs:
            con.execute(
                target + head + f"'updated', {n_sel} from {new_t} n join {old_t} o "
                f"on o.{k} = n.{k} where {differs}",
                params,
            )
        con.execute(
            target + head + f"'removed', {o_sel} from {old_t} o "
            f"where not exists (select 1 from {new_t} n where n.{k} = o.{k})",
            params,
        )
    rows = con.execute(
        f"select change, count(*) from {feed} where change_run_id = ? group by change", [run_id]
    ).fetchall()
    counts = {c: int(n) for c, n in rows}
    con.execute(
        f"insert into {HISTORY}.{runs_name(call_list)} values (?, ?, ?, ?, ?)",
        [run_id, published_at, *(counts.get(c, 0) for c in ("new", "updated", "removed"))],
    )
    return counts

"""What the last published build scored (schema `mlsm_state`), which incremental scoring
compares each build with (mlsm_py/dbt/incremental_sql.py):

scorers            the sha256 of each scorer's generated SQL (model, role)
<relation>__rows   the fingerprint of each feature row

Publication rewrites both inside its transaction, so they always describe the published
tables: a failed build changes nothing here, and the next build sees the same changes again.
"""

from __future__ import annotations

import duckdb
from sqlglot import exp

from mlsm_py.dbt import incremental_sql as inc
from mlsm_py.registry import store
from mlsm_py.spec import Definitions

STATE = inc.STATE
AUDIT = "audit"


def _table(name: str) -> str:
    return exp.to_table(f"{STATE}.{name}", dialect="duckdb").sql("duckdb", identify=True)


def relations(defs: Definitions) -> list[str]:
    return sorted({m.features for m in defs.models})


def ensure(con: duckdb.DuckDBPyConnection, defs: Definitions) -> None:
    """Create the state tables if missing (a first build: nothing published yet)."""
    key = defs.models[0].key
    k = exp.to_identifier(key, quoted=True).sql("duckdb")
    con.execute(f"create schema if not exists {STATE}")
    con.execute(
        f"create table if not exists {_table('scorers')} "
        "(model_name varchar, role varchar, scorer_sha varchar)"
    )
    for rel in relations(defs):
        # Typed as the relation's key (it exists: `mlsm train` built it); varchar otherwise.
        key_type = dict(store.relation_columns(con, rel)).get(key, "varchar")
        con.execute(
            f"create table if not exists {_table(inc.rows_name(rel))} "
            f"({k} {key_type}, row_hash varchar)"
        )


def publish(
    con: duckdb.DuckDBPyConnection, defs: Definitions, full: bool
) -> dict[str, dict[str, int]]:
    """Make the state describe this build (inside the publish transaction). Returns, per
    relation, how many records were new, changed and gone."""
    key = defs.models[0].key
    k = exp.to_identifier(key, quoted=True).sql("duckdb")
    plan = f"{AUDIT}.{inc.PLAN}"
    if store.table_exists(con, AUDIT, inc.PLAN):
        con.execute(f"delete from {_table('scorers')}")
        con.execute(
            f"insert into {_table('scorers')} select model_name, role, scorer_sha from {plan}"
        )
    changed = {}
    for rel in relations(defs):
        name = inc.changes_name(rel)
        if not store.table_exists(con, AUDIT, name):
            continue
        rows, changes = _table(inc.rows_name(rel)), f"{AUDIT}.{exp.to_identifier(name).sql()}"
        if full:
            con.execute(f"delete from {rows}")
        else:
            con.execute(f"delete from {rows} where {k} in (select {k} from {changes})")
        con.execute(
            f"insert into {rows} select {k}, row_hash from {changes} where change <> 'gone'"
        )
        counts = dict(con.execute(f"select change, count(*) from {changes} group by 1").fetchall())
        changed[rel] = {c: counts.get(c, 0) for c in ("new", "changed", "gone")}
    return changed

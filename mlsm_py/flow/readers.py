"""A copy of the published tables for readers, in a DuckDB file of its own.

DuckDB admits one writer or many readers per file, so an analyst's or a dashboard's connection
to the warehouse makes the next build fail. Readers open `<warehouse>.published.duckdb`
instead. After each publication it is written whole under a temporary name and renamed over the
old one: a reader that has it open keeps reading the old file (the old inode) until it
reconnects, and never holds the warehouse. The copy is derived: a kill before the rename leaves
the previous copy, and the next build writes it again.

Beside the published tables the copy holds what a dashboard reads (`mlsm dashboard`,
docs/decisions/0020-dashboard.md): the registry tables people look at, without the fits' SQL
bodies, and the monitoring views materialised as tables, as they stood at this publication."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
from sqlglot import exp

from mlsm_py.dbt.monitoring_sql import views_yml
from mlsm_py.registry import store
from mlsm_py.registry.schema import DESCRIPTIONS, SCHEMA

PUBLISHED = "published"
MONITORING = "monitoring"
REGISTRY = (
    "builds",
    "aliases",
    "fits",
    "fit_metrics",
    "fit_bins",
    "decisions",
    "decision_metrics",
    "summary_metrics",
)
# A fit's SQL (megabytes for a large ensemble) and its parity report are for dbt and for
# `mlsm verify`, not for readers; the rest of the row is what a dashboard shows.
LEFT_OUT = {"fits": ("scoring_sql", "dbt_sql", "parity")}
# first_scores_with_outcomes is one row per record and model: the views below aggregate it.
MONITORING_VIEWS = (
    "score_distribution",
    "input_drift_history",
    "realised_performance",
    "realised_calibration",
    "champion_vs_challenger",
)


def readers_file(warehouse: Path) -> Path:
    return warehouse.with_name(f"{warehouse.stem}.published.duckdb")


def export(
    con: duckdb.DuckDBPyConnection,
    warehouse: Path,
    tables: list[str],
    docs: dict,
    merge: tuple[str, str] | None = None,
) -> tuple[Path, bool]:
    """Write the readers' copy from the warehouse `con` is connected to: the published
    `tables` under the same names (with their comments), the publication log and the other
    `REGISTRY` tables, and the `MONITORING_VIEWS` as tables.

    `merge`: (the run the previous copy should reflect, the rows of `scores` this
    publication replaced, as `state.scope` gives them). The previous copy is then copied
    and only those rows of its `scores` replaced, when its own publication log says it is
    that run's; otherwise everything is copied afresh. Returns the file, and whether its
    scores were merged."""

    target = readers_file(warehouse)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    if merge is not None and target.exists():
        shutil.copyfile(target, tmp)  # the file as it is: page cache speed, ~0.1 s for 250 MB
    # One look at the catalog, not one per table: information_schema costs ~15 ms a query.
    q = "select table_schema, table_name from information_schema.tables"
    present = set(con.execute(q).fetchall())
    merged = False
    con.execute(f"attach {exp.Literal.string(str(tmp)).sql('duckdb')} as mlsm_readers")
    try:
        merged = merge is not None and _merge_scores(con, *merge)
        for schema, name, doc in copied(tables, docs):
            if (schema, name) not in present or (
                merged and (schema, name) == (PUBLISHED, "scores")
            ):
                continue
            con.execute(f"create schema if not exists mlsm_readers.{schema}")
            drop = LEFT_OUT.get(name, ()) if schema == SCHEMA else ()
            cols = f"* exclude ({', '.join(drop)})" if drop else "*"
            con.execute(
                f"create or replace table mlsm_readers.{schema}.{name} as "
                f"select {cols} from {schema}.{name}"
            )
            if doc is not None:
                comment(con, f"mlsm_readers.{schema}.{name}", *doc)
    finally:
        con.execute("detach mlsm_readers")
    os.replace(tmp, target)
    return target, merged


def _merge_scores(con: duckdb.DuckDBPyConnection, previous_run: str, where: str) -> bool:
    """Bring the copied file's published.scores to the warehouse's, replacing the rows
    `where` selects (and those of scorers gone); False if the copy is not the previous
    publication's (a kill between publication and copy), which is then copied whole."""
    mine = "mlsm_readers.published.scores"
    try:
        (run,) = con.execute(
            f"select run_id from mlsm_readers.{SCHEMA}.builds where status = 'published' "
            "order by finished_at desc limit 1"
        ).fetchone() or (None,)
        same = (
            con.execute(f"describe {mine}").fetchall()
            == con.execute(f"describe {PUBLISHED}.scores").fetchall()
        )
    except duckdb.CatalogException:  # an older copy without them: copy whole
        return False
    if run != previous_run or not same:
        return False
    con.execute(
        f"delete from {mine} as p where ({where.format(t='p')}) or not exists ("
        "select 1 from audit.score_plan as plan "
        "where plan.model_name = p.model_name and plan.role = p.role)"
    )
    con.execute(
        f"insert into {mine} select * from {PUBLISHED}.scores as a where ({where.format(t='a')})"
    )
    return True


def copied(tables: list[str], docs: dict) -> list[tuple[str, str, tuple | None]]:
    """(schema, table, its (description, column docs) or None) of everything the copy holds."""
    watched = {v["name"]: v for v in views_yml()}
    return [
        *((PUBLISHED, t, docs.get(t)) for t in tables),
        *((SCHEMA, t, (DESCRIPTIONS[t], {})) for t in REGISTRY),
        *(
            (MONITORING, v, (watched[v]["description"], _columns(watched[v])))
            for v in MONITORING_VIEWS
        ),
    ]


def _columns(doc: dict) -> dict[str, str]:
    return {c["name"]: c["description"] for c in doc.get("columns", [])}


def comment(
    con: duckdb.DuckDBPyConnection, table: str, description: str, columns: dict[str, str]
) -> None:
    """The yml's descriptions as warehouse comments, so any SQL client shows them."""
    lit = lambda text: exp.Literal.string(text).sql("duckdb")  # noqa: E731
    if description:
        con.execute(f"comment on table {table} is {lit(description)}")
    if table.count(".") >= 2:  # the readers' copy, attached: a DuckDB-only name
        present = {r[0] for r in con.execute(f"describe {table}").fetchall()}
    else:
        present = {c for c, _ in store.relation_columns(con, table)}
    for col, text in columns.items():
        if col in present:
            ident = exp.to_identifier(col, quoted=True).sql("duckdb")
            con.execute(f"comment on column {table}.{ident} is {lit(text)}")

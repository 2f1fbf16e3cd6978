"""A copy of the published tables for readers, in a DuckDB file of its own.

DuckDB admits one writer or many readers per file, so an analyst's or a dashboard's connection
to the warehouse makes the next build fail. Readers open `<warehouse>.published.duckdb`
instead. After each publication it is written whole under a temporary name and renamed over the
old one: a reader that has it open keeps reading the old file (the old inode) until it
reconnects, and never holds the warehouse. The copy is derived: a kill before the rename leaves
the previous copy, and the next build writes it again."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
from sqlglot import exp

from mlsm_py.registry import store
from mlsm_py.registry.schema import SCHEMA

PUBLISHED = "published"


def readers_file(warehouse: Path) -> Path:
    return warehouse.with_name(f"{warehouse.stem}.published.duckdb")


def export(con: duckdb.DuckDBPyConnection, warehouse: Path, tables: list[str], docs: dict) -> Path:
    """Write the readers' copy from the warehouse `con` is connected to: the published
    `tables` under the same names (with their comments) and the publication log."""

    target = readers_file(warehouse)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    con.execute(f"attach {exp.Literal.string(str(tmp)).sql('duckdb')} as mlsm_readers")
    try:
        for schema, name in [*((PUBLISHED, t) for t in tables), (SCHEMA, "builds")]:
            if not store.table_exists(con, schema, name):
                continue
            con.execute(f"create schema if not exists mlsm_readers.{schema}")
            con.execute(
                f"create table mlsm_readers.{schema}.{name} as select * from {schema}.{name}"
            )
            if name in docs:
                comment(con, f"mlsm_readers.{schema}.{name}", *docs[name])
    finally:
        con.execute("detach mlsm_readers")
    os.replace(tmp, target)
    return target


def comment(
    con: duckdb.DuckDBPyConnection, table: str, description: str, columns: dict[str, str]
) -> None:
    """The yml's descriptions as warehouse comments, so any SQL client shows them."""
    lit = lambda text: exp.Literal.string(text).sql("duckdb")  # noqa: E731
    if description:
        con.execute(f"comment on table {table} is {lit(description)}")
    present = {r[0] for r in con.execute(f"describe {table}").fetchall()}
    for col, text in columns.items():
        if col in present:
            ident = exp.to_identifier(col, quoted=True).sql("duckdb")
            con.execute(f"comment on column {table}.{ident} is {lit(text)}")

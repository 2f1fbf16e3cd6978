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

from mlsm_py.registry.schema import SCHEMA

PUBLISHED = "published"
# What readers see: the published tables under the same names, and the publication log.
TABLES = ((PUBLISHED, "scores"), (PUBLISHED, "winners"), (SCHEMA, "builds"))


def readers_file(warehouse: Path) -> Path:
    return warehouse.with_name(f"{warehouse.stem}.published.duckdb")


def export(con: duckdb.DuckDBPyConnection, warehouse: Path) -> Path:
    """Write the readers' copy from the warehouse `con` is connected to; returns its path."""
    target = readers_file(warehouse)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    q = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    con.execute(f"attach {exp.Literal.string(str(tmp)).sql('duckdb')} as mlsm_readers")
    try:
        for schema, name in TABLES:
            if not con.execute(q, [schema, name]).fetchone()[0]:
                continue
            con.execute(f"create schema if not exists mlsm_readers.{schema}")
            con.execute(
                f"create table mlsm_readers.{schema}.{name} as select * from {schema}.{name}"
            )
    finally:
        con.execute("detach mlsm_readers")
    os.replace(tmp, target)
    return target

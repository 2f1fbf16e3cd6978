"""A DB-API connection that speaks the SQL mlsm writes for itself.

mlsm's own statements (registry, publication, history) are written once, in DuckDB's dialect,
with `?` placeholders, and run unchanged on DuckDB. On another warehouse `SqlConnection`
transpiles each statement with sqlglot (once per distinct text) and hands it to the driver;
results come back through the same small surface DuckDB's connection offers: `execute(sql,
params)` then `fetchone()`, `fetchall()`, `description`, `df()`, `fetch_arrow_table()`."""

from __future__ import annotations

import functools
import re
from typing import Any

import sqlglot

# psycopg2 reads % as the start of a parameter when parameters are passed.
_LONE_PERCENT = re.compile(r"%(?!s)")


@functools.lru_cache(maxsize=4096)
def transpile(sql: str, dialect: str) -> str:
    statements = sqlglot.transpile(sql, read="duckdb", write=dialect)
    if len(statements) != 1:
        raise ValueError(f"expected one statement, got {len(statements)}: {sql[:80]}")
    return statements[0]


class Result:
    def __init__(self, cursor: Any):
        self._cur = cursor

    @property
    def description(self):
        return self._cur.description

    def fetchone(self):
        return self._cur.fetchone()

    def fetchall(self):
        return self._cur.fetchall()

    def df(self):
        """As DuckDB's .df(): numbers as float64/int64 (NULL as NaN), text as objects."""
        return self.fetch_arrow_table().to_pandas()

    def fetch_arrow_table(self):
        import pyarrow as pa

        from mlsm_py.warehouse.engines import arrow_type

        rows = self._cur.fetchall()
        arrays = []
        for j, d in enumerate(self._cur.description):
            values = [r[j] for r in rows]
            typ = pa.float64() if d.type_code == 1700 else arrow_type(d.type_code)
            arrays.append(pa.array(values, type=typ))
        return pa.table(arrays, names=[d[0] for d in self._cur.description])


class SqlConnection:
    """A psycopg2 connection (autocommit; transactions are explicit BEGIN/COMMIT)."""

    def __init__(self, raw: Any, dialect: str):
        self.raw = raw
        self.dialect = dialect

    def execute(self, sql: str, params: list | tuple | None = None) -> Result:
        text = transpile(sql, self.dialect)
        cur = self.raw.cursor()
        if params:
            cur.execute(_LONE_PERCENT.sub("%%", text), list(params))
        else:
            cur.execute(text)
        return Result(cur)

    def execute_native(self, sql: str, params: list | tuple | None = None) -> Result:
        """A statement already in the warehouse's own dialect (not transpiled)."""
        cur = self.raw.cursor()
        cur.execute(sql, list(params) if params else None)
        return Result(cur)

    def executemany(self, sql: str, rows: list) -> None:
        from psycopg2.extras import execute_batch

        text = _LONE_PERCENT.sub("%%", transpile(sql, self.dialect))
        with self.raw.cursor() as cur:
            execute_batch(cur, text, rows, page_size=1000)

    def copy_rows(self, table: str, columns: list[str], rows) -> None:
        """Append rows (tuples of Python values) with COPY: one round trip for many rows."""
        from mlsm_py.warehouse.engines import copy_text

        with self.raw.cursor() as cur:
            cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin", copy_text(rows))

    def close(self) -> None:
        self.raw.close()

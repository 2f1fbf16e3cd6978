"""Where compiled SQL runs: a small engine interface over DuckDB, PostgreSQL and Spark.

An engine loads an Arrow table under a name, runs one SELECT and hands the result back as Arrow,
and knows the sqlglot dialect its SQL is rendered in. The parity gate (`check_parity`) talks to
engines only, so the same check runs on every warehouse mlsm targets. The PostgreSQL and Spark
drivers are optional dependencies (`mlsm[postgres]`, `mlsm[spark]`), imported on first use.
"""

from __future__ import annotations

import io
import math
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from mlsm_py.errors import UnsupportedError


@runtime_checkable
class Engine(Protocol):
    dialect: str

    def load(self, table_name: str, table: pa.Table) -> None:
        """Make `table` queryable as `table_name` for this session (replacing any earlier one)."""

    def fetch_arrow(self, sql: str) -> pa.Table: ...

    def drop(self, table_name: str) -> None: ...

    def close(self) -> None: ...


def engine_for(con: Any) -> Engine:
    """An Engine as is; a DuckDB connection wrapped in one."""
    if isinstance(con, Engine):
        return con
    import duckdb

    if isinstance(con, duckdb.DuckDBPyConnection):
        return DuckDBEngine(con)
    raise UnsupportedError(
        f"cannot run SQL on {type(con).__name__}; pass a DuckDB connection or an engine from "
        "mlsm_py.warehouse.engines (DuckDBEngine, PostgresEngine, SparkEngine)"
    )


class DuckDBEngine:
    dialect = "duckdb"

    def __init__(self, con: Any):
        self.con = con

    def load(self, table_name: str, table: pa.Table) -> None:
        # A view over the Arrow table: no copy, NaN and NULL kept apart as Arrow has them.
        self.con.register(table_name, table)

    def fetch_arrow(self, sql: str) -> pa.Table:
        return self.con.execute(sql).fetch_arrow_table()

    def drop(self, table_name: str) -> None:
        self.con.unregister(table_name)

    def close(self) -> None:
        self.con.close()


# PostgreSQL type OIDs the compiled SQL produces, and the Arrow type each comes back as.
_PG_ARROW_TYPES = {
    16: pa.bool_(),  # boolean
    20: pa.int64(),  # bigint
    21: pa.int64(),  # smallint
    23: pa.int64(),  # integer
    25: pa.string(),  # text
    700: pa.float64(),  # real
    701: pa.float64(),  # double precision
    1043: pa.string(),  # varchar
}
_PG_NUMERIC = 1700
# Types mlsm's own queries read besides (registry times, the demo's dates).
_PG_OTHER_TYPES = {
    1082: pa.date32(),  # date
    1114: pa.timestamp("us"),  # timestamp
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz
}


# Integer widths as declared, as DuckDB's frames have them (int32 stays int32).
_PG_INTEGERS = {20: pa.int64(), 21: pa.int16(), 23: pa.int32()}


def arrow_type(type_code: int) -> pa.DataType | None:
    """The Arrow type of a PostgreSQL result column (None: let Arrow infer it)."""
    return (
        _PG_INTEGERS.get(type_code)
        or _PG_ARROW_TYPES.get(type_code)
        or _PG_OTHER_TYPES.get(type_code)
    )


class PostgresEngine:
    """PostgreSQL through psycopg2. Tables are loaded as TEMP tables with COPY: doubles as
    `double precision` (NaN and +-Infinity kept as such), strings as `text`, integers as
    `bigint`."""

    dialect = "postgres"

    def __init__(self, dsn: str):
        import psycopg2

        self.con = psycopg2.connect(dsn)
        # Every statement stands alone: a failed query must not poison the next one.
        self.con.autocommit = True

    def load(self, table_name: str, table: pa.Table) -> None:
        from psycopg2 import sql

        cols = [
            sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_pg_type(f.type)))
            for f in table.schema
        ]
        name = sql.Identifier(table_name)
        with self.con.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
            cur.execute(sql.SQL("CREATE TEMP TABLE {} ({})").format(name, sql.SQL(", ").join(cols)))
            copy = sql.SQL("COPY {} FROM STDIN").format(name).as_string(self.con)
            cur.copy_expert(copy, copy_text(arrow_rows(table)))

    def fetch_arrow(self, sql: str) -> pa.Table:
        with self.con.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
            desc = cur.description
        arrays, names = [], []
        for j, d in enumerate(desc):
            values = [r[j] for r in rows]
            if d.type_code == _PG_NUMERIC:
                # Compiled SQL computes in double precision; a NUMERIC column means a literal
                # escaped the emitter's casts and the arithmetic was decimal. Say so.
                raise UnsupportedError(
                    f"column {d.name!r} is NUMERIC; fetch_arrow returns double precision, "
                    "integer, text and boolean columns (cast it to double precision)"
                )
            arrays.append(pa.array(values, type=_PG_ARROW_TYPES.get(d.type_code)))
            names.append(d.name)
        return pa.table(arrays, names=names)

    def drop(self, table_name: str) -> None:
        from psycopg2 import sql

        with self.con.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table_name)))

    def close(self) -> None:
        self.con.close()


def _pg_type(typ: pa.DataType) -> str:
    if pa.types.is_floating(typ):
        return "double precision"
    if pa.types.is_integer(typ):
        return "bigint"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    if pa.types.is_boolean(typ):
        return "boolean"
    if pa.types.is_timestamp(typ):
        return "timestamptz" if typ.tz else "timestamp"
    if pa.types.is_date(typ):
        return "date"
    raise UnsupportedError(
        f"cannot load an Arrow {typ} column into PostgreSQL; supported: float, integer, string, "
        "boolean"
    )


# COPY's text format: backslash escapes for the four characters that would end a field or row.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        # repr() round-trips, and PostgreSQL parses it with a correctly rounded strtod.
        return repr(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if hasattr(value, "isoformat"):  # datetime / date: ISO text COPY reads exactly
        return value.isoformat()
    if isinstance(value, str):
        if "\x00" in value:
            raise UnsupportedError("PostgreSQL text cannot hold a NUL character")
        return value.translate(_COPY_ESCAPES)
    return str(value)


def arrow_rows(table: pa.Table):
    """An Arrow table's rows, as tuples of Python values."""
    return zip(*(c.to_pylist() for c in table.columns), strict=True)


def copy_text(rows) -> io.StringIO:
    """Rows (tuples of Python or numpy scalar values) in COPY's text format."""
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(_copy_field(_plain(v)) for v in row))
        buf.write("\n")
    buf.seek(0)
    return buf


def _plain(v: Any) -> Any:
    # numpy scalars as Python ones: repr(np.float64(0.5)) is "np.float64(0.5)" in numpy 2.
    item = getattr(v, "item", None)
    return item() if callable(item) else v


class SparkEngine:
    """Spark SQL through a SparkSession: tables become temporary views of Arrow-built
    DataFrames (NaN stays NaN, None is NULL)."""

    dialect = "spark"

    def __init__(self, spark: Any):
        self.spark = spark

    def load(self, table_name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(table).createOrReplaceTempView(table_name)

    def fetch_arrow(self, sql: str) -> pa.Table:
        return self.spark.sql(sql).toArrow()

    def drop(self, table_name: str) -> None:
        self.spark.catalog.dropTempView(table_name)

    def close(self) -> None:
        # The session is the caller's: it may serve other work; stopping it is theirs to do.
        pass

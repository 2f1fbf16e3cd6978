"""Timing both scoring routes of a fit on its own holdout rows, when the static estimate cannot
tell them apart (see `compile.path.choose_path`).

The static cost model was fitted to one benchmark's models; on data of another shape it was off
by up to 1.7x (issue 14), which is enough to pick the slower route whenever the two estimates
are close. So for a close call mlsm measures, in the warehouse the fit will be scored in: the
holdout rows, repeated to PROBE_ROWS, become a temporary table; the compiled SQL is planned
(EXPLAIN) and run into a temporary table, and the Python model scores the same table through
`pyscore.score_relation` and writes its result back, as dbt-duckdb does. Each route runs once;
if the two are within RECHECK of each other, once more, alternating, and each keeps its best.

PROBE_ROWS is two DuckDB row groups (2 x 122,880 rows). DuckDB parallelises a scan by row group,
so a one-group sample runs the SQL on one thread while a full table uses every thread: with
65,536 rows the probe sent a 100-tree GradientBoosting to Python although SQL was 17% faster
on 1,000,000 rows. The result is recorded with the fit
(`mlsm_registry.fits.route_timing`), so the route, and the generated file, follow from the
registry, not from a second measurement.

Per million rows: SQL = plan + (run - plan) * 1e6 / rows (planning is paid once per
statement, not per row); Python = run * 1e6 / rows.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pyarrow as pa

from mlsm_py.compile.assemblers import Assembled
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.path import Measured
from mlsm_py.pyscore import score_relation

PROBE_ROWS = 2 * 122_880  # two row groups: the SQL runs on two threads, as on a full table
RECHECK = 1.25  # routes closer than this are timed a second time
KEY = "__mlsm_probe_row"
SOURCE = "__mlsm_probe_rows"
OUT = "__mlsm_probe_out"
VIEW = "__mlsm_probe_view"


def probe_table(holdout: pd.DataFrame, types: dict[str, str], rows: int = PROBE_ROWS) -> pa.Table:
    """The holdout's input columns repeated to `rows` rows, NaN and None as NULL, with a key."""
    arrays = {}
    for name, kind in types.items():
        values = holdout[name]
        if kind == "string":
            arrays[name] = pa.array(values.astype(object), pa.string(), from_pandas=True)
        else:
            arrays[name] = pa.array(values.astype("float64"), pa.float64(), from_pandas=True)
    one = pa.table(arrays)
    copies = -(-rows // max(1, one.num_rows))
    table = pa.concat_tables([one] * copies).slice(0, rows).combine_chunks()
    return table.append_column(KEY, pa.array(range(table.num_rows), pa.int64()))


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(
    estimator: Any, assembled: Assembled, con: Any, holdout: pd.DataFrame, types: dict[str, str]
) -> Measured:
    """Both routes on `con` (a DuckDB connection) over the holdout rows; temporary tables only,
    dropped before returning."""
    table = probe_table(holdout, types)
    sql = SqlEmitter("duckdb").render(assembled, SOURCE, KEY)
    con.register(VIEW, table)
    try:
        con.execute(f"create or replace temp table {SOURCE} as select * from {VIEW}")
    finally:
        con.unregister(VIEW)
    plan_s, sql_s, py_s = [], [], []

    def run_sql() -> None:
        con.execute(f"create or replace temp table {OUT} as {sql}")

    def run_python() -> None:
        scored = score_relation(estimator, con.table(SOURCE), KEY)
        con.register(VIEW, scored)
        try:
            con.execute(f"create or replace temp table {OUT} as select * from {VIEW}")
        finally:
            con.unregister(VIEW)

    try:
        plan_s.append(_timed(lambda: con.execute("explain " + sql).fetchall()))
        sql_s.append(_timed(run_sql))
        py_s.append(_timed(run_python))
        if max(sql_s[0], py_s[0]) < RECHECK * min(sql_s[0], py_s[0]):
            py_s.append(_timed(run_python))
            sql_s.append(_timed(run_sql))
    finally:
        con.execute(f"drop table if exists {OUT}")
        con.execute(f"drop table if exists {SOURCE}")
    return Measured(table.num_rows, min(sql_s), min(plan_s), min(py_s))

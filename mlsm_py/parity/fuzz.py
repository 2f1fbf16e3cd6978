"""Parity at scale: the gate on N generated rows, built column by column in Arrow.

Each input column of each row is drawn independently from a mix of: values seen in the holdout,
uniform values over (and beyond) the holdout's range, both float32 and float64 neighbours of every
constant the compiled model compares the column with, NULL and NaN; text columns from known
levels (holdout and model), unseen and hostile levels, NULL. Rows where one value is +-inf or
beyond float32 are few (scikit-learn refuses them and each is scored on its own) and carry one
such value each. The library scores every row; the compiled SQL (or the Python-model path)
scores them in the warehouse; the two are compared as the gate compares them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsm_py.compile.assemblers import Assembled
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.parity.gate import (
    EXTREMES,
    HOSTILE_LEVELS,
    PARITY_TABLE,
    ROW_KEY,
    TOLERANCE,
    ParityReport,
    _compared_constants,
    _levels,
    compare,
    neighbours,
    sql_outputs,
    with_evaluator,
)
from mlsm_py.pyscore import output_columns, predict, score_relation
from mlsm_py.warehouse.engines import engine_for

# Share of values drawn from each pool, per column.
MIX = {"holdout": 0.35, "uniform": 0.2, "threshold": 0.35, "missing": 0.1}
# Rows holding one +-inf / beyond-float32 value; scikit-learn refuses these one by one.
MAX_ODD_ROWS = 1000
ODD_VALUES = [math.inf, -math.inf, 1e300, -1e300, 3.4e38, -3.4e38]


@dataclass(frozen=True)
class FuzzReport:
    parity: ParityReport
    rows_generated: int
    rows_above_tolerance: int

    def to_dict(self) -> dict:
        return {
            **self.parity.to_dict(),
            "rows_generated": self.rows_generated,
            "rows_above_tolerance": self.rows_above_tolerance,
        }


def _numeric_column(
    rng: np.random.Generator, n: int, seen: np.ndarray, constants: Sequence[float]
) -> np.ndarray:
    seen = seen[np.isfinite(seen)]
    if len(seen) == 0:
        seen = np.array([0.0, 1.0])
    lo, hi = float(np.min(seen)), float(np.max(seen))
    span = max(hi - lo, 1.0)
    pools = [
        rng.choice(seen, n),
        rng.uniform(lo - span, hi + span, n),
        rng.choice(np.array(sorted({v for c in constants for v in neighbours(c)}) or [lo]), n),
        np.where(rng.random(n) < 0.5, np.nan, rng.choice(np.array(EXTREMES[:6]), n)),
    ]
    which = rng.choice(len(pools), n, p=list(MIX.values()))
    out = np.choose(which, pools)
    return out


def _string_column(rng: np.random.Generator, n: int, levels: Sequence[str]) -> list[str | None]:
    known = list(levels) or ["__mlsm_level__"]
    pool: list[str | None] = known * 8 + HOSTILE_LEVELS + [None] * max(1, len(known))
    idx = rng.integers(0, len(pool), n)
    return [pool[i] for i in idx]


def fuzz_table(
    types: dict[str, str],
    holdout: pd.DataFrame | None,
    n: int,
    seed: int = 0,
    assembled: Assembled | None = None,
) -> pa.Table:
    """`n` generated rows plus a row key; NaN stays NaN, None is NULL."""
    rng = np.random.default_rng(seed)
    consts = _compared_constants(assembled) if assembled is not None else {}
    model_levels = _levels(assembled) if assembled is not None else {}
    cols: dict[str, pa.Array] = {ROW_KEY: pa.array(np.arange(n, dtype=np.int64))}
    numeric = [c for c, k in sorted(types.items()) if k == "double"]
    for name, kind in sorted(types.items()):
        seen = holdout[name] if holdout is not None and name in holdout else None
        if kind == "double":
            values = np.asarray(seen, dtype="float64") if seen is not None else np.zeros(0)
            data = _numeric_column(rng, n, values, sorted(consts.get(name, ())))
            nulls = rng.random(n) < MIX["missing"] / 2  # NULL as well as NaN
            cols[name] = pa.array(data, pa.float64(), mask=nulls)
        else:
            levels = set(model_levels.get(name, ()))
            if seen is not None:
                levels |= {str(v) for v in pd.Series(seen).dropna().unique()[:200]}
            cols[name] = pa.array(_string_column(rng, n, sorted(levels)), pa.string())
    table = pa.table(cols)
    if numeric:
        table = _with_odd_rows(table, rng, numeric)
    return _within_contract(table, assembled.finite if assembled is not None else frozenset())


def _within_contract(table: pa.Table, finite: frozenset[str]) -> pa.Table:
    """NaN and +-inf become NULL in the columns a contract keeps finite: a build never scores
    such a value (the `finite` check blocks or quarantines the row), so it is not fuzzed."""
    for name in sorted(finite & set(table.column_names)):
        col = table.column(name)
        bad = pc.invert(pc.is_finite(pc.fill_null(col, 0.0)))
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.if_else(bad, pa.scalar(None, pa.float64()), col))
    return table


def _with_odd_rows(table: pa.Table, rng: np.random.Generator, numeric: list[str]) -> pa.Table:
    n = table.num_rows
    k = min(MAX_ODD_ROWS, max(1, n // 100))
    rows = rng.choice(n, k, replace=False)
    cols = rng.choice(numeric, k)
    vals = rng.choice(np.array(ODD_VALUES), k)
    for name in numeric:
        pick = cols == name
        if not pick.any():
            continue
        arr = table.column(name).to_numpy(zero_copy_only=False).copy()
        valid = table.column(name).is_valid().to_numpy(zero_copy_only=False).copy()
        arr[rows[pick]] = vals[pick]
        valid[rows[pick]] = True
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(arr, pa.float64(), mask=~valid)
        )
    return table


class _Rows(Sequence):
    """Rows of an Arrow table as dicts, built only when one is looked at (the worst row)."""

    def __init__(self, table: pa.Table):
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i):  # type: ignore[override]
        return self.table.slice(int(i), 1).to_pylist()[0]


def _expected(estimator: Any, table: pa.Table, types: dict[str, str]) -> np.ndarray:
    from mlsm_py.pyscore import frame

    names = output_columns(estimator)
    out = predict(estimator, frame(table.combine_chunks().to_batches()[0], types))
    return _as_matrix(out, names, estimator)


def _as_matrix(cols: dict, names: list[str], estimator: Any) -> np.ndarray:
    n = len(cols[names[0]])
    mat = np.full((n, len(names)), np.nan)
    for j, name in enumerate(names):
        values = cols[name].to_pylist() if hasattr(cols[name], "to_pylist") else list(cols[name])
        if name == "predicted_class":
            index = {c: float(i) for i, c in enumerate(estimator.classes_)}
            mat[:, j] = [index.get(v, np.nan) for v in values]
        else:
            mat[:, j] = [np.nan if v is None else float(v) for v in values]
    return mat


def fuzz_parity(
    estimator: Any,
    con: Any,
    table: pa.Table,
    types: dict[str, str],
    *,
    assembled: Assembled | None,
    path: str = "sql",
    tolerance: float | None = None,
) -> FuzzReport:
    """Score `table` in the warehouse (SQL or the Python-model path) and with the library.

    `tolerance` defaults as in `check_parity`: TOLERANCE, or the coarser one the SQL of a model
    family declares (`Assembled.tolerance`, XGBoost's float32 probabilities). The Python-model
    path runs the library itself, so it keeps TOLERANCE."""
    if tolerance is None:
        declared = assembled.tolerance if path == "sql" and assembled is not None else None
        tolerance = max(TOLERANCE, declared or 0.0)
    expected = _expected(estimator, table, types)
    names = output_columns(estimator)
    if path == "sql":  # in the engine's own dialect, wherever it runs
        assert assembled is not None
        engine = engine_for(con)
        engine.load(PARITY_TABLE, table)
        try:
            sql = SqlEmitter(engine.dialect).render(assembled, PARITY_TABLE, ROW_KEY)
            got = sql_outputs(engine.fetch_arrow(sql), assembled, table.num_rows)
        finally:
            engine.drop(PARITY_TABLE)
    else:  # the Python-model route: DuckDB, as dbt-duckdb runs it
        con.register(PARITY_TABLE, table)
        try:
            out = score_relation(estimator, con.table(PARITY_TABLE), ROW_KEY)
            order = np.argsort(out.column(ROW_KEY).to_numpy())
            out = out.take(pa.array(order))
            got = _as_matrix({n: out.column(n) for n in names}, names, estimator)
        finally:
            con.unregister(PARITY_TABLE)
    report = compare(_Rows(table), expected, got, tolerance, names)
    if assembled is not None:  # the serving evaluator on the same generated rows
        report = with_evaluator(report, assembled, table.to_pylist(), expected, names)
    return FuzzReport(report, table.num_rows, report.rows_above_tolerance)

"""The reason codes' gate, beside the score's: on the same holdout + adversarial rows, the
serving evaluator's contributions sum with the expected value to the model's margin, and the
scoring SQL (the dbt model's own body) publishes the same reasons and contributions as the
evaluator (a swap is allowed only between contributions equal within the tolerance). The
SQL's own sum to the margin is tested per family in tests/test_reasons_sql.py."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlsm_py.compile import reasons as rc
from mlsm_py.compile.assemblers import Assembled
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.python_emitter import compile_python
from mlsm_py.errors import ParityError
from mlsm_py.frames import arrow_rows
from mlsm_py.parity.gate import (
    PARITY_TABLE,
    ROW_KEY,
    TOLERANCE,
    _records,
    adversarial_rows,
    input_types,
)
from mlsm_py.warehouse.engines import engine_for


@dataclass(frozen=True)
class ReasonsReport:
    rows_checked: int
    tolerance: float
    max_sum_diff: float  # max |expected + sum(contributions) - margin| (evaluator), scaled
    max_sql_evaluator_diff: float  # the published contributions, SQL vs evaluator
    reason_mismatches: int  # rows whose published reasons differ beyond a near-tie

    @property
    def passed(self) -> bool:
        worst = max(self.max_sum_diff, self.max_sql_evaluator_diff)
        return worst <= self.tolerance and self.reason_mismatches == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def check_reasons(
    c: rc.Contributions,
    k: int,
    con: Any,
    holdout: pd.DataFrame | None,
    assembled: Assembled,
    sql: str | None = None,
    key: str = ROW_KEY,
) -> ReasonsReport:
    """`sql`: the scoring SELECT over PARITY_TABLE keyed by `key` (the dbt model's body, so
    the SQL checked is the SQL published); None renders the reason columns alone."""
    tol = max(TOLERANCE, c.tolerance or 0.0)
    types = input_types(assembled, holdout)
    rows = _records(holdout, types) if holdout is not None and len(holdout) else []
    rows.extend(adversarial_rows(assembled, rows[:5], types))
    for i, r in enumerate(rows):
        r[key] = i
    top = rc.top_reasons(c, k)
    engine = engine_for(con)
    if sql is None:
        sql = SqlEmitter(engine.dialect).render(rc.as_assembled(c.inputs, top), PARITY_TABLE, key)
    engine.load(PARITY_TABLE, arrow_rows(rows, types, key))
    try:
        table = engine.fetch_arrow(sql)
    finally:
        engine.drop(PARITY_TABLE)
    order = np.argsort(table.column(key).to_numpy())
    published = [n for n, _ in top]
    sql_cols = [table.column(n).to_pylist() for n in published]
    sql_rows = [[col[int(i)] for col in sql_cols] for i in order]
    n = len(c.inputs)
    py = compile_python([*rc.contribution_columns(c), *top])
    sum_diff = cross = 0.0
    mismatches = checked = 0
    for a, b in zip(sql_rows, py.score_many(rows), strict=True):
        margin = b[n + 1]
        if margin is None or not math.isfinite(margin):
            continue  # the model gives no finite margin here: nothing to explain
        checked += 1
        scale = max(1.0, abs(margin))
        terms = [0.0 if v is None else float(v) for v in b[:n]]
        sum_diff = max(sum_diff, abs(float(b[n]) + sum(terms) - margin) / scale)
        by_name = dict(zip(c.inputs, b[:n], strict=True))
        for r in range(k):
            name_sql, value_sql = a[2 * r], a[2 * r + 1]
            name_py, value_py = b[n + 2 + 2 * r], b[n + 3 + 2 * r]
            if name_sql != name_py:
                near = abs(abs(by_name[name_sql]) - abs(by_name[name_py])) <= tol * scale
                mismatches += not near
                continue
            if (value_sql is None) != (value_py is None):
                cross = math.inf
            elif value_sql is not None:
                cross = max(cross, abs(float(value_sql) - float(value_py)) / scale)
    return ReasonsReport(checked, tol, sum_diff, cross, mismatches)


def gate(name: str, version: int, report: ReasonsReport) -> None:
    if not report.passed:
        raise ParityError(
            f"reason codes failed for model {name!r} v{version} on {report.rows_checked} rows: "
            f"max |expected + sum - margin| {report.max_sum_diff:.3g}; published contributions, "
            "SQL vs API evaluator "
            f"{report.max_sql_evaluator_diff:.3g}; {report.reason_mismatches} rows pick other "
            f"reasons; tolerance {report.tolerance:g}. The dbt model was not written."
        )

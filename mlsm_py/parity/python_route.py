"""The parity gate for the Python-model path.

The generated dbt Python model scores through `pyscore.score_relation`: warehouse rows -> Arrow
batches -> the estimator's frame -> predict. What can go wrong there is the conversion (types,
NULL/NaN, text levels) and the output columns, so the gate runs the same holdout + adversarial
rows through that exact path in the warehouse and compares with the library on a frame built
the way training built it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlsm_py.compile.assemblers import assemble
from mlsm_py.errors import UnsupportedError
from mlsm_py.estimator import task_of
from mlsm_py.frames import arrow_rows
from mlsm_py.parity.gate import (
    EXTREMES,
    HOSTILE_LEVELS,
    NON_FINITE,
    PARITY_TABLE,
    ROW_KEY,
    TOLERANCE,
    ParityReport,
    _python_scores,
    _records,
    adversarial_rows,
    compare,
    input_types,
    with_evaluator,
)
from mlsm_py.pyscore import input_names, output_columns, score_relation


def _types(estimator: Any, holdout: pd.DataFrame | None) -> dict[str, str]:
    names = input_names(estimator)
    if holdout is None:
        return {n: "double" for n in names}
    out = {}
    for n in names:
        kind = holdout[n].dtype.kind
        out[n] = "double" if kind in "fiub" else "string"
    return out


def generic_adversarial_rows(types: dict[str, str], base: list[dict], levels: dict) -> list[dict]:
    """Adversarial rows for a model SQL cannot express: no split thresholds are known, so every
    input gets NULL, NaN, +-inf and extremes, or its known, unseen and hostile levels."""
    base = base or [{n: None for n in types}]
    rows: list[dict] = [{n: None for n in types}]
    for i, name in enumerate(sorted(types)):
        row0 = base[i % len(base)]
        if types[name] == "double":
            values: list[Any] = [None, *NON_FINITE, *EXTREMES]
        else:
            values = [None, *sorted(levels.get(name, ())), *HOSTILE_LEVELS]
        rows.extend({**row0, name: v} for v in values)
    return rows


def check_parity_python(
    estimator: Any,
    con: Any,
    holdout: pd.DataFrame | None = None,
    *,
    tolerance: float = TOLERANCE,
) -> ParityReport:
    """Score holdout + adversarial rows through the Python-model path on `con` (DuckDB) and
    compare with the library's own predict_proba / predict."""
    try:
        assembled = assemble(estimator)
    except UnsupportedError:
        assembled = None
    types = input_types(assembled, holdout) if assembled is not None else _types(estimator, holdout)
    rows: list[dict] = _records(holdout, types) if holdout is not None and len(holdout) else []
    if assembled is not None:
        rows.extend(adversarial_rows(assembled, rows[:5], types))
    else:
        levels = {
            n: set(holdout[n].dropna().astype(str).unique()[:50])
            for n, k in types.items()
            if k == "string" and holdout is not None
        }
        rows.extend(generic_adversarial_rows(types, rows[:5], levels))
    for i, r in enumerate(rows):
        r[ROW_KEY] = i
    names = output_columns(estimator)
    expected = _python_scores(estimator, rows, types, task_of(estimator), len(names))
    con.register(PARITY_TABLE, arrow_rows(rows, types, ROW_KEY))
    try:
        got_tbl = score_relation(estimator, con.table(PARITY_TABLE), ROW_KEY)
    finally:
        con.unregister(PARITY_TABLE)
    got = np.full((len(rows), len(names)), np.nan)
    keys = got_tbl.column(ROW_KEY).to_numpy()
    for j, name in enumerate(names):
        col = got_tbl.column(name).to_pylist()
        if name == "predicted_class":
            index = {c: float(i) for i, c in enumerate(estimator.classes_)}
            got[keys, j] = [index.get(v, np.nan) for v in col]
        else:
            got[keys, j] = [np.nan if v is None else float(v) for v in col]
    report = compare(rows, expected, got, tolerance, names)
    if assembled is None:  # only the library can score it; the API does not serve it
        return report
    return with_evaluator(report, assembled, rows, expected, names)

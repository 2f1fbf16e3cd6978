"""The parity gate: run the compiled SQL in the warehouse and compare it with the library.

Rows checked are the holdout rows plus adversarial rows built from the model itself: an
all-NULL row, NaN / +-inf / extremes in every numeric input, both float64 and both float32
neighbours of every constant a numeric input is compared with, every known level and unseen or
hostile levels of every category input. The tests call this same function.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.python_emitter import compile_python
from mlsm_py.errors import ParityError, UnsupportedError
from mlsm_py.frames import arrow_rows, python_rows
from mlsm_py.pyscore import library_frame, predict_refusing
from mlsm_py.warehouse.engines import engine_for

# The SQL repeats the library's float64 arithmetic except for summation order and the form of
# the sigmoid; both move results by a few ulps (~1e-16). 1e-9 leaves room for that and nothing
# else: a single misrouted tree node moves a score by far more. See docs/decisions/0005.
TOLERANCE = 1e-9

ROW_KEY = "__mlsm_row"
PARITY_TABLE = "__mlsm_parity_rows"
EXTREMES = [0.0, -0.0, 1e-320, -1e-320, 1e12, -1e12, 3.4e38, -3.4e38, 1e300, -1e300]
NON_FINITE = [math.nan, math.inf, -math.inf]
HOSTILE_LEVELS = [
    "__mlsm_unseen__",
    "",
    " ",
    "O'Reilly; drop table x; --",
    '{{ env_var("HOME") }}',
    "{% raw %}{% endraw %}",
    "line\nbreak",
    "Zürich ✓",
]


@dataclass(frozen=True)
class ParityReport:
    rows_checked: int
    rows_refused_by_estimator: int
    max_abs_diff: float
    worst_row: dict
    tolerance: float
    # |SQL - Python| / max(1, |Python|): absolute for scores up to 1 (every probability),
    # relative beyond, where one ulp of a 1e11 regression output is already 1.5e-5.
    max_scaled_diff: float | None = None
    rows_above_tolerance: int = 0
    # The third leg: the serving API's in-process evaluator of the same AST
    # (compile.python_emitter) against the library, on the same rows. None: not run (a fit
    # only the library can score).
    evaluator_max_abs_diff: float | None = None
    evaluator_max_scaled_diff: float | None = None
    evaluator_rows_above_tolerance: int = 0
    evaluator_worst_row: dict | None = None

    @property
    def sql_passed(self) -> bool:
        scaled = self.max_abs_diff if self.max_scaled_diff is None else self.max_scaled_diff
        return scaled <= self.tolerance

    @property
    def evaluator_passed(self) -> bool:
        return self.evaluator_max_scaled_diff is None or (
            self.evaluator_max_scaled_diff <= self.tolerance
        )

    @property
    def passed(self) -> bool:
        """All legs agree: the SQL with the library, and the API's evaluator with it."""
        return self.sql_passed and self.evaluator_passed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def input_types(assembled: Assembled, frame: pd.DataFrame | None = None) -> dict[str, str]:
    """Each input column with the SQL type the compiled model reads it as."""
    types: dict[str, str] = {}
    for node in _walk(assembled):
        if isinstance(node, ast.ColumnRef) and node.sql_type is not None:
            types[node.name] = node.sql_type
    # Inputs the model never reads (a ColumnTransformer dropping them) still have to be present
    # for the library's predict, with the type the rows hold them in.
    out = {}
    for n in assembled.inputs:
        if n in types:
            out[n] = types[n]
        elif frame is not None and n in frame and frame[n].dtype.kind not in "fiub":
            out[n] = "string"
        else:
            out[n] = "double"
    return out


def _walk(assembled: Assembled):
    stack, seen = [e for _, e in assembled.outputs()], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(ast.children(node))


def _compared_constants(assembled: Assembled) -> dict[str, set[float]]:
    """For each numeric input, the constants it is compared with (split thresholds, levels)."""
    out: dict[str, set[float]] = {}
    for node in _walk(assembled):
        if isinstance(node, ast.CompExpr) and isinstance(node.right, ast.NumVal):
            col = node.left
            while not isinstance(col, ast.ColumnRef) and hasattr(col, "expr"):
                col = col.expr
            if isinstance(col, ast.ColumnRef):
                out.setdefault(col.name, set()).add(float(node.right.value))
    return out


def _levels(assembled: Assembled) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node in _walk(assembled):
        if isinstance(node, ast.StrEqExpr):
            col = node.expr
            while not isinstance(col, ast.ColumnRef) and hasattr(col, "expr"):
                col = col.expr
            if isinstance(col, ast.ColumnRef):
                out.setdefault(col.name, set()).add(node.value)
    return out


def neighbours(value: float) -> list[float]:
    """The value, its float64 neighbours, and the float32 values on either side of it."""
    f = np.float32(value)
    lo32 = f if float(f) <= value else np.nextafter(f, np.float32(-np.inf))
    hi32 = f if float(f) >= value else np.nextafter(f, np.float32(np.inf))
    if float(lo32) == value:
        lo32 = np.nextafter(lo32, np.float32(-np.inf))
    if float(hi32) == value:
        hi32 = np.nextafter(hi32, np.float32(np.inf))
    vals = {value, float(np.nextafter(value, -np.inf)), float(np.nextafter(value, np.inf))}
    vals |= {float(lo32), float(hi32)}
    return sorted(v for v in vals if math.isfinite(v))


def adversarial_rows(
    assembled: Assembled, base_rows: list[dict], types: dict[str, str] | None = None
) -> list[dict]:
    types = types or input_types(assembled)
    base = base_rows or [{n: None for n in types}]
    rows: list[dict] = [{n: None for n in types}]  # every input missing
    consts = _compared_constants(assembled)
    levels = _levels(assembled)
    for i, name in enumerate(sorted(types)):
        row0 = base[i % len(base)]
        if types[name] == "double":
            # NaN and +-inf in a column the contract keeps finite never reach the SQL.
            odd = [] if name in assembled.finite else NON_FINITE
            values: list[Any] = [None, *odd, *EXTREMES]
            for c in sorted(consts.get(name, ())):
                values.extend(neighbours(c))
        else:
            values = [None, *sorted(levels.get(name, ())), *HOSTILE_LEVELS]
        for v in values:
            rows.append({**row0, name: v})
    return rows


def _predict(estimator: Any, frame: pd.DataFrame, task: str) -> np.ndarray:
    with warnings.catch_warnings():
        # Extreme adversarial values overflow float32 inside the library; that is the point.
        warnings.simplefilter("ignore", RuntimeWarning)
        return _predict_raw(estimator, frame, task)


def _predict_raw(estimator: Any, frame: pd.DataFrame, task: str) -> np.ndarray:
    """(rows, outputs): the positive-class probability, the prediction, or every class's
    probability followed by the index of the predicted class."""
    if task == "classifier":
        return np.asarray(estimator.predict_proba(frame)[:, 1], dtype="float64")[:, None]
    if task == "decision":
        return np.asarray(estimator.decision_function(frame), dtype="float64").reshape(-1, 1)
    if task == "multiclass":
        proba = np.asarray(estimator.predict_proba(frame), dtype="float64")
        predicted = np.asarray(estimator.predict(frame))
        index = {c: i for i, c in enumerate(estimator.classes_)}
        return np.column_stack([proba, [float(index[c]) for c in predicted]])
    return np.asarray(estimator.predict(frame), dtype="float64").reshape(len(frame), -1)[:, :1]


def _python_scores(
    estimator: Any, rows: list[dict], types: dict[str, str], task: str, width: int
) -> np.ndarray:
    """Library outputs, (rows, width); rows the library refuses (e.g. +-inf for scikit-learn)
    come back NaN."""
    frame = library_frame(estimator, python_rows(rows, types))
    return predict_refusing(lambda df: _predict(estimator, df, task), frame, width)


def check_parity(
    estimator: Any,
    con: Any,
    holdout: pd.DataFrame | None = None,
    *,
    tolerance: float | None = None,
    dialect: str | None = None,
    adversarial: bool = True,
    extra_rows: list[dict] | None = None,
    assembled: Assembled | None = None,
) -> ParityReport:
    """Score holdout + adversarial rows with the compiled SQL on `con` and with the library;
    report rows checked, max |diff| and the worst row.

    `tolerance` defaults to TOLERANCE, or to the coarser tolerance the model family declares
    for its own arithmetic (`Assembled.tolerance`: XGBoost's float32 probabilities).
    `con` is a DuckDB connection or an engine from `mlsm_py.warehouse.engines` (PostgreSQL,
    Spark); the SQL is rendered in the engine's dialect unless `dialect` says otherwise.
    `assembled`: the estimator already assembled (the lifecycle assembles each fit once)."""
    if assembled is None:
        assembled = assemble(estimator)
    if tolerance is None:
        tolerance = max(TOLERANCE, assembled.tolerance or 0.0)
    types = input_types(assembled, holdout)
    rows: list[dict] = []
    if holdout is not None and len(holdout):
        rows.extend(_records(holdout, types))
    if adversarial:
        rows.extend(adversarial_rows(assembled, rows[:5], types))
    rows.extend(extra_rows or [])
    for i, r in enumerate(rows):
        r[ROW_KEY] = i
    outputs = assembled.outputs()
    expected = _python_scores(estimator, rows, types, assembled.task, len(outputs))
    engine = engine_for(con)
    sql = SqlEmitter(dialect or engine.dialect).render(assembled, PARITY_TABLE, ROW_KEY)
    engine.load(PARITY_TABLE, arrow_rows(rows, types, ROW_KEY))
    try:
        got_tbl = engine.fetch_arrow(sql)
    finally:
        engine.drop(PARITY_TABLE)
    got = sql_outputs(got_tbl, assembled, len(rows))
    names = [n for n, _ in outputs]
    report = compare(rows, expected, got, tolerance, names)
    return with_evaluator(report, assembled, rows, expected, names)


def evaluator_outputs(assembled: Assembled, rows: list[dict]) -> np.ndarray:
    """The in-process evaluator's outputs as (rows, outputs), the predicted class as its
    index, like `sql_outputs`."""
    model = compile_python(assembled.outputs())
    index = {c: float(i) for i, c in enumerate(assembled.classes)}
    is_class = [n == "predicted_class" and assembled.task == "multiclass" for n in model.outputs]
    got = np.full((len(rows), len(model.outputs)), np.nan)
    for i, values in enumerate(model.score_many(rows)):
        for j, v in enumerate(values):
            if is_class[j]:
                got[i, j] = math.nan if v is None else index.get(v, math.nan)
            else:
                got[i, j] = v
    return got


def with_evaluator(
    report: ParityReport,
    assembled: Assembled,
    rows: list[dict],
    expected: np.ndarray,
    names: list[str],
) -> ParityReport:
    """`report` with the evaluator leg filled in: the same rows through the Python function
    the API scores with, compared with the library at the same tolerance."""
    leg = compare(rows, expected, evaluator_outputs(assembled, rows), report.tolerance, names)
    return replace(
        report,
        evaluator_max_abs_diff=leg.max_abs_diff,
        evaluator_max_scaled_diff=leg.max_scaled_diff,
        evaluator_rows_above_tolerance=leg.rows_above_tolerance,
        evaluator_worst_row=leg.worst_row,
    )


def sql_outputs(table: Any, assembled: Assembled, n_rows: int) -> np.ndarray:
    """The SQL result as (rows, outputs) in row-key order; the predicted class as its index."""
    outputs = assembled.outputs()
    got = np.full((n_rows, len(outputs)), np.nan)
    keys = table.column(ROW_KEY).to_numpy()
    for j, (name, _) in enumerate(outputs):
        is_class = name == "predicted_class" and assembled.task == "multiclass"
        typ = table.schema.field(name).type
        if not is_class and not pa.types.is_floating(typ):
            # A DECIMAL score was computed in decimal arithmetic, not the library's float64
            # (a literal typed as NUMERIC/DECIMAL by the engine): refuse it however close.
            raise UnsupportedError(f"the compiled SQL returned {name!r} as {typ}, not a double")
        col = table.column(name).to_pylist()
        if is_class:
            index = {c: float(i) for i, c in enumerate(assembled.classes)}
            got[keys, j] = [index.get(v, math.nan) if v is not None else math.nan for v in col]
        else:
            got[keys, j] = [math.nan if v is None else float(v) for v in col]
    return got


def compare(
    rows: list[dict],
    expected: np.ndarray,
    got: np.ndarray,
    tolerance: float,
    names: list[str] | None = None,
):
    """Max |SQL - Python| over rows and output columns. A predicted class counts as a full
    disagreement (inf) when it differs, unless the library's top two probabilities are within
    the tolerance of each other (a tie the last ulp decides)."""
    expected = expected.reshape(len(expected), -1)
    got = got.reshape(len(got), -1)
    names = names or ["score"]
    accepted = ~np.isnan(expected).any(axis=1)
    diff = np.abs(got - expected)
    # Equal infinities (a regressor's +-inf) agree; a NULL where the library gave a number is
    # the worst disagreement there is.
    diff = np.where(got == expected, 0.0, diff)
    diff = np.where(np.isnan(got) & ~np.isnan(expected), np.inf, diff)
    if names[-1] == "predicted_class":
        probs = expected[:, :-1]
        top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] >= 2 else probs
        near_tie = (top2[:, -1] - top2[:, 0]) <= tolerance if probs.shape[1] >= 2 else False
        mismatch = got[:, -1] != expected[:, -1]
        diff[:, -1] = np.where(mismatch & ~near_tie, np.inf, 0.0)
    diff = np.where(accepted[:, None], diff, 0.0)
    with np.errstate(invalid="ignore"):
        scale = np.where(np.isfinite(expected), np.maximum(1.0, np.abs(expected)), 1.0)
    scaled = diff / scale
    per_row = diff.max(axis=1) if diff.size else np.zeros(len(rows))
    per_row_scaled = scaled.max(axis=1) if scaled.size else np.zeros(len(rows))
    worst = int(np.argmax(per_row_scaled)) if len(per_row_scaled) else 0
    worst_row = {}
    if len(rows):
        worst_row = {k: _jsonable(v) for k, v in rows[worst].items()}
        for j, name in enumerate(names):
            suffix = "" if name == "score" else f"_{name}"
            worst_row[f"python_score{suffix}"] = _jsonable(expected[worst, j])
            worst_row[f"sql_score{suffix}"] = _jsonable(got[worst, j])
    return ParityReport(
        rows_checked=int(accepted.sum()),
        rows_refused_by_estimator=int((~accepted).sum()),
        max_abs_diff=float(per_row.max()) if len(per_row) else 0.0,
        worst_row=worst_row,
        tolerance=tolerance,
        max_scaled_diff=float(per_row_scaled.max()) if len(per_row_scaled) else 0.0,
        rows_above_tolerance=int((per_row_scaled > tolerance).sum()),
    )


def _records(df: pd.DataFrame, types: dict[str, str]) -> list[dict]:
    out = []
    cols = {n: df[n].tolist() for n in types}
    for i in range(len(df)):
        row = {}
        for n, k in types.items():
            v = cols[n][i]
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                row[n] = None
            else:
                row[n] = str(v) if k == "string" else float(v)
        out.append(row)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        v = float(v)
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def gate(name: str, version: int, report: ParityReport) -> None:
    if report.sql_passed and not report.evaluator_passed:
        raise ParityError(
            f"parity failed for model {name!r} v{version}: the serving evaluator disagrees "
            f"with the library on {report.evaluator_rows_above_tolerance} of "
            f"{report.rows_checked} rows by more than {report.tolerance:g}; max |API - Python| "
            f"= {report.evaluator_max_abs_diff:.3g}; worst row: {report.evaluator_worst_row}. "
            "The SQL agrees; the fit is not servable and was not registered."
        )
    if not report.passed:
        raise ParityError(
            f"parity failed for model {name!r} v{version}: {report.rows_above_tolerance} of "
            f"{report.rows_checked} rows differ by more than {report.tolerance:g} "
            "(|SQL - Python|, relative where |Python| > 1); max |SQL - Python| = "
            f"{report.max_abs_diff:.3g}; worst row: {report.worst_row}. "
            "The dbt model was not written."
        )

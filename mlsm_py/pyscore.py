"""The Python-model path: score a warehouse relation with the library itself, in Arrow batches.

Used by the generated dbt Python models (dbt-duckdb runs them in-process) for estimators SQL
cannot express or where SQL would be slower, and by the parity gate and the benchmark. It never
materialises the input table in pandas: each batch of `batch_rows` rows is converted, scored and
reduced to the key plus the output columns, the same columns the SQL path yields.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from lightgbm import LGBMModel

from mlsm_py.compile.assemblers import class_label, output_name
from mlsm_py.compile.assemblers.lightgbm import pandas_categories
from mlsm_py.errors import UnsupportedError
from mlsm_py.estimator import task_of

BATCH_ROWS = 100_000


def input_names(estimator: Any) -> list[str]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        raise UnsupportedError(
            f"{type(estimator).__name__} was fitted without column names; fit it on a pandas "
            "DataFrame so it can be scored by column name (feature_names_in_)"
        )
    return [str(n) for n in names]


def input_types(schema: pa.Schema, names: Iterable[str]) -> dict[str, str]:
    """ "string" for text columns of the relation, "double" for everything else."""
    out = {}
    for n in names:
        typ = schema.field(n).type
        out[n] = "string" if pa.types.is_string(typ) or pa.types.is_large_string(typ) else "double"
    return out


def frame(batch: pa.RecordBatch, types: Mapping[str, str]) -> pd.DataFrame:
    """A batch as the frame the estimator was trained on (see `frames.model_frame`): numbers as
    float64 with NaN for missing, text as Python strings with NaN for missing."""
    cols = {}
    for name, kind in types.items():
        col = batch.column(batch.schema.get_field_index(name))
        if kind == "string":
            values = col.to_numpy(zero_copy_only=False).astype(object)
            values[pd.isna(values)] = np.nan
            cols[name] = values
        else:
            cols[name] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return pd.DataFrame(cols, columns=list(types))


def output_columns(estimator: Any) -> list[str]:
    if task_of(estimator) == "multiclass":
        return [output_name(class_label(c)) for c in estimator.classes_] + ["predicted_class"]
    return ["score"]


def _predict_array(estimator: Any, df: pd.DataFrame, task: str) -> np.ndarray:
    """(rows, k) float64: the positive-class probability, decision, prediction or every class's
    probability."""
    with warnings.catch_warnings():
        # Extreme values overflow float32 inside the library; the rows are still scored.
        warnings.simplefilter("ignore", RuntimeWarning)
        if task == "classifier":
            return np.asarray(estimator.predict_proba(df), dtype="float64")[:, 1:2]
        if task == "decision":
            return np.asarray(estimator.decision_function(df), dtype="float64").reshape(-1, 1)
        if task == "regressor":
            return np.asarray(estimator.predict(df), dtype="float64").reshape(len(df), -1)[:, :1]
        return np.asarray(estimator.predict_proba(df), dtype="float64")


def category_levels(estimator: Any) -> dict[str, list[str]]:
    """{column: training levels} of a LightGBM model fitted on pandas `category` columns;
    empty for anything else. Read once per relation: it dumps the model."""
    return pandas_categories(estimator) if isinstance(estimator, LGBMModel) else {}


def library_frame(
    estimator: Any, df: pd.DataFrame, levels: dict[str, list[str]] | None = None
) -> pd.DataFrame:
    """The frame as the library itself needs it. A LightGBM model fitted on pandas `category`
    columns refuses text columns: those become `pd.Categorical` in the training levels (an
    unseen level becomes missing, as LightGBM maps it). `levels`: `category_levels`, if the
    caller has it."""
    if not isinstance(estimator, LGBMModel):
        return df
    levels = category_levels(estimator) if levels is None else levels
    if not levels:
        return df
    df = df.copy()
    for name, cats in levels.items():
        df[name] = pd.Categorical(df[name].where(df[name].notna(), None), categories=cats)
    return df


def predict_refusing(
    fn: Callable[[pd.DataFrame], np.ndarray], df: pd.DataFrame, width: int
) -> np.ndarray:
    """`fn(df)` as a (rows, width) array, with NaN rows where the library refuses the row.

    scikit-learn raises for a whole batch if one row holds +-inf, a value beyond float32, or
    (for models without an imputer) NaN. The batch is tried whole first (one call: the common
    case, and the library's own batching). If it raises, rows are tried in groups -- complete,
    with missing values, with non-finite or huge values -- and a group that raises is retried
    row by row, so the rows the library accepts are still scored.
    """
    out = np.full((len(df), width), np.nan)
    if len(df):
        try:
            out[:] = fn(df)
            return out
        except ValueError:
            pass
    numeric = df.select_dtypes(include="number").to_numpy(dtype="float64")
    missing = df.isna().to_numpy().any(axis=1)
    with np.errstate(invalid="ignore"):
        odd = (np.abs(np.nan_to_num(numeric, nan=0.0)) >= 3.0e38).any(axis=1)
    groups = [~missing & ~odd, missing & ~odd, odd]
    for mask in groups:
        idx = np.flatnonzero(mask)
        if not len(idx):
            continue
        try:
            out[idx] = fn(df.iloc[idx] if len(idx) < len(df) else df)
            continue
        except ValueError:
            pass
        for i in idx:
            # The library raises on such a row: it stays NaN (NULL downstream).
            with contextlib.suppress(ValueError):
                out[i] = fn(df.iloc[[i]])[0]
    return out


def predict(
    estimator: Any, df: pd.DataFrame, levels: dict[str, list[str]] | None = None
) -> dict[str, pa.Array]:
    """Output columns for a frame. Rows the library refuses (scikit-learn raises on +-inf or
    values beyond float32) get NULL outputs, so the score checks downstream name them; the rest
    of the batch is scored."""
    task = task_of(estimator)
    names = output_columns(estimator)
    width = len(names) - 1 if task == "multiclass" else 1
    df = library_frame(estimator, df, levels)
    values = predict_refusing(lambda d: _predict_array(estimator, d, task), df, width)
    refused = np.isnan(values).all(axis=1)
    out = {
        n: pa.array(values[:, j], pa.float64(), mask=refused) for j, n in enumerate(names[:width])
    }
    if task == "multiclass":
        labels = [class_label(c) for c in estimator.classes_]
        # Same first-maximum rule as the SQL path's predicted_class.
        best = np.argmax(np.where(np.isnan(values), -np.inf, values), axis=1)
        out["predicted_class"] = pa.array(
            [None if r else labels[i] for i, r in zip(best, refused, strict=True)]
        )
    return out


def score_batches(
    estimator: Any,
    batches: Iterable[pa.RecordBatch],
    key: str,
    constants: Mapping[str, str | int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Key, constants (model name, version, ...) and the output columns, batch by batch."""
    names = input_names(estimator)
    levels = category_levels(estimator)
    types: dict[str, str] | None = None
    for batch in batches:
        if types is None:
            missing = [n for n in [key, *names] if batch.schema.get_field_index(n) < 0]
            if missing:
                raise UnsupportedError(f"the relation lacks the model's columns {missing}")
            types = input_types(batch.schema, names)
        if batch.num_rows == 0:
            continue
        arrays = {key: batch.column(batch.schema.get_field_index(key))}
        for name, value in (constants or {}).items():
            typ = pa.string() if isinstance(value, str) else pa.int64()
            arrays[name] = pa.array([value] * batch.num_rows, typ)
        arrays.update(predict(estimator, frame(batch, types), levels))
        yield pa.RecordBatch.from_pydict(arrays)


def score_relation(
    estimator: Any,
    relation: Any,
    key: str,
    batch_rows: int = BATCH_ROWS,
    constants: Mapping[str, str | int] | None = None,
) -> pa.Table:
    """Score a DuckDB relation (e.g. `dbt.ref(...)` inside a dbt-duckdb Python model)."""
    names = input_names(estimator)
    cols = [key, *[n for n in names if n != key]]
    rel = relation.select(*[_quoted(c) for c in cols])
    reader = rel.fetch_arrow_reader(batch_rows)
    batches = list(score_batches(estimator, prefetched(reader), key, constants))
    if not batches:
        return _empty(estimator, rel, key, constants)
    return pa.Table.from_batches(batches)


def prefetched(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`batches`, read one ahead on a thread: DuckDB produces batch i+1 while the library
    predicts batch i (both release the GIL). Measured on 1,000,000 rows: 5-10% off the Python
    route of a 200-tree LightGBM and a 100-tree forest (docs/decisions/0024). An error while
    reading is raised here; closing the iterator early stops the reader."""
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(e)
            return
        put(end)

    thread = threading.Thread(target=read, name="mlsm-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty(estimator: Any, rel: Any, key: str, constants: Mapping | None) -> pa.Table:
    # An empty relation still yields a table with the right columns (and a typed key).
    schema = rel.limit(0).fetch_arrow_table().schema
    fields = [schema.field(key)]
    for name, value in (constants or {}).items():
        fields.append(pa.field(name, pa.string() if isinstance(value, str) else pa.int64()))
    for name in output_columns(estimator):
        if name == "predicted_class":
            label = class_label(estimator.classes_[0])
            typ = pa.string() if isinstance(label, str) else pa.int64()
            fields.append(pa.field(name, typ))
        else:
            fields.append(pa.field(name, pa.float64()))
    return pa.schema(fields).empty_table()

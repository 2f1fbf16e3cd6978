"""One conversion from warehouse rows to the frame a Python model sees, used by training, the
parity gate and the benchmark alike: numbers as float64 with NaN for missing, categories as
Python strings with NaN for missing (what scikit-learn's imputers and encoders expect)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa


def model_frame(df: pd.DataFrame, types: Mapping[str, str]) -> pd.DataFrame:
    """`types` maps each input column to "double" or "string"."""
    out = {}
    for name, kind in types.items():
        col = df[name]
        if kind == "string":
            values = col.astype(object).to_numpy()
            missing = pd.isna(values)
            values = np.where(missing, np.nan, values).astype(object)
            out[name] = [v if isinstance(v, float) else str(v) for v in values]
        else:
            out[name] = pd.to_numeric(col, errors="raise").astype("float64")
    return pd.DataFrame(out, index=df.index).astype(
        {n: (object if k == "string" else "float64") for n, k in types.items()}
    )


def arrow_rows(rows: list[dict], types: Mapping[str, str], key: str) -> pa.Table:
    """Rows as an Arrow table for the warehouse: None is NULL, float('nan') stays NaN."""
    arrays = {key: pa.array([r[key] for r in rows], type=pa.int64())}
    for name, kind in types.items():
        typ = pa.string() if kind == "string" else pa.float64()
        arrays[name] = pa.array([r.get(name) for r in rows], type=typ, from_pandas=False)
    return pa.table(arrays)


def python_rows(rows: list[dict], types: Mapping[str, str]) -> pd.DataFrame:
    df = pd.DataFrame([{n: r.get(n) for n in types} for r in rows], columns=list(types))
    return model_frame(df, types)

"""A segmented model's levels: how a record's segment is named, in Python and in SQL.

A record's segment is its `segment_by` values as text, joined by '|' when there are several
(`"de"`, `"de|web"`); a NULL in any of them gives no segment, which the fallback scores. Integer
columns are named by their integer value, so 3 and 3.0 name the same segment on both sides."""

from __future__ import annotations

import pandas as pd

from mlsm_py.spec import Model

SEP = "|"


def labels(df: pd.DataFrame, m: Model) -> pd.Series:
    """Each row's segment (None where any segment column is NULL)."""
    types = {f.name: f.type for f in m.fields}
    parts = []
    for c in m.segments:
        col = df[c]
        if types[c] == "integer":
            col = pd.Series(pd.array(col, dtype="Int64"), index=df.index)
        parts.append(col.astype("string"))
    out = parts[0]
    for p in parts[1:]:
        out = out + SEP + p
    return out.astype(object).where(out.notna(), None)


def sql(m: Model, alias: str | None = None) -> str:
    """The segment of a row in SQL (DuckDB dialect; `||` gives NULL when a part is NULL)."""
    types = {f.name: f.type for f in m.fields}
    prefix = f'"{alias}".' if alias else ""
    parts = []
    for c in m.segments:
        col = f'{prefix}"{c}"'
        parts.append(
            f"cast(cast({col} as bigint) as varchar)"
            if types[c] == "integer"
            else f"cast({col} as varchar)"
        )
    return f" || '{SEP}' || ".join(parts)


def describe(m: Model) -> str:
    return "+".join(m.segments)

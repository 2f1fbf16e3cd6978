"""Population stability (PSI) of an input against the fit's training data.

A numeric input is binned on its training deciles (9 cuts; equal cuts merged), a category on
its training levels; NULL and NaN are a bin of their own, and a level the training never saw
falls in the "unseen" bin (training share 0). PSI = sum over bins of (a - e) * ln(a / e),
with shares floored at EPS so an empty bin counts as rare, not infinite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsm_py.spec import Field

EPS = 1e-4
MISSING = "__missing__"
UNSEEN = "__unseen__"


@dataclass(frozen=True)
class Reference:
    """One input's training distribution: numeric cuts (bin i is (cut[i-1], cut[i]], bin 0
    is missing, the last bin is above the last cut), or category levels; and each bin's share."""

    column: str
    kind: str  # numeric | category
    cuts: tuple[float, ...]
    levels: tuple[str, ...]
    shares: tuple[float, ...]  # numeric: bins 0..len(cuts)+1; category: missing, levels..., unseen

    def rows(self) -> list[dict]:
        """The registry rows (mlsm_registry.fit_input_reference)."""
        out = []
        for i, share in enumerate(self.shares):
            if self.kind == "numeric":
                lower = None if i <= 1 else self.cuts[i - 2]
                upper = None if i == 0 or i > len(self.cuts) else self.cuts[i - 1]
                level = MISSING if i == 0 else None
            else:
                lower = upper = None
                level = ([MISSING, *self.levels, UNSEEN])[i]
            out.append(
                {
                    "column_name": self.column,
                    "kind": self.kind,
                    "bin": i,
                    "lower": lower,
                    "upper": upper,
                    "level": level,
                    "share": share,
                }
            )
        return out


def _numeric(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64")


def assign(col: pd.Series, ref: Reference) -> np.ndarray:
    """Bin of each value, as the SQL assigns it."""
    if ref.kind == "numeric":
        x = _numeric(col)
        missing = np.isnan(x)
        # (cut[i-1], cut[i]] is bin i: the number of cuts strictly below x, plus 1
        b = np.searchsorted(np.asarray(ref.cuts), x, side="left") + 1
        return np.where(missing, 0, b)
    values = col.astype(object)
    index = {v: i + 1 for i, v in enumerate(ref.levels)}
    unseen = len(ref.levels) + 1
    return np.array(
        [0 if (v is None or v != v) else index.get(str(v), unseen) for v in values], dtype=int
    )


def reference(col: pd.Series, field: Field) -> Reference:
    n = max(len(col), 1)
    if field.type == "category":
        present = col.dropna().astype(str)
        levels = tuple(sorted(present.unique()))
        counts = present.value_counts()
        shares = [float(col.isna().sum() / n)] + [float(counts[v] / n) for v in levels] + [0.0]
        return Reference(field.name, "category", (), levels, tuple(shares))
    x = _numeric(col)
    finite = x[~np.isnan(x)]
    cuts: tuple[float, ...] = ()
    if len(finite):
        q = np.quantile(finite, np.arange(1, 10) / 10)
        cuts = tuple(float(v) for v in np.unique(q))
    ref = Reference(field.name, "numeric", cuts, (), ())
    counts = np.bincount(assign(col, ref), minlength=len(cuts) + 2)
    return Reference(field.name, "numeric", cuts, (), tuple(float(c / n) for c in counts))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype="float64"), EPS)
    a = np.maximum(np.asarray(actual, dtype="float64"), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def drift(col: pd.Series, ref: Reference) -> tuple[float, float]:
    """(PSI, unseen share) of `col` against `ref`."""
    n = max(len(col), 1)
    counts = np.bincount(assign(col, ref), minlength=len(ref.shares)) / n
    unseen = float(counts[-1]) if ref.kind == "category" else 0.0
    return psi(np.asarray(ref.shares), counts), unseen

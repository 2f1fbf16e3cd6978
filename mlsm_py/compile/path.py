"""Choosing the scoring path per model: SQL in the warehouse, or a dbt Python model.

Provisional cost model (to be recalibrated by bench/layout_experiment.py): SQL cost grows with
the number of split nodes evaluated per row; the library's cost is far flatter. From
bench/score_throughput.py at 1M rows: a 60-tree depth-8 forest (SQL 11.0 s vs Python 5.7 s) is
slower in SQL, a 150-tree LightGBM (5.6 s vs 7.9 s) faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import Assembled

# Split nodes above which SQL is expected to be slower than the Python-model path.
MAX_SQL_SPLITS = 8_000


@dataclass(frozen=True)
class PathChoice:
    path: str  # "sql" or "python"
    reason: str


def count_splits(assembled: Assembled) -> int:
    seen: set[int] = set()
    stack = [e for _, e in assembled.outputs()]
    splits = 0
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ast.IfExpr):
            splits += 1
        for attr in ("expr", "left", "right", "test", "body", "orelse", "default"):
            child = getattr(node, attr, None)
            if isinstance(child, ast.Expr):
                stack.append(child)
        stack.extend(getattr(node, "exprs", ()))
    return splits


def choose_path(estimator: Any, assembled: Assembled) -> PathChoice:
    splits = count_splits(assembled)
    if splits > MAX_SQL_SPLITS:
        return PathChoice(
            "python", f"{splits:,} split nodes > {MAX_SQL_SPLITS:,}: SQL expected slower"
        )
    return PathChoice("sql", f"{splits:,} split nodes <= {MAX_SQL_SPLITS:,}")

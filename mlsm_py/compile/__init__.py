"""Compile fitted estimators to SQL: pick the assembler, assemble, emit."""

from __future__ import annotations

from typing import Any

from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.emitter import SqlEmitter, parse_check


def to_sql(estimator: Any, table: str, key: str | None = None, dialect: str = "duckdb") -> str:
    """One SELECT over `table` yielding `key` (when given) and `score`.

    `score` is the positive-class probability of a binary classifier, or the prediction of a
    regressor. The estimator may be a fitted Pipeline; input columns are read by name
    (`feature_names_in_`). Unsupported estimators or parameters raise `UnsupportedError` naming
    them and listing what is supported.
    """
    sql = SqlEmitter(dialect).render(assemble(estimator), table, key)
    parse_check(sql, dialect)
    return sql


__all__ = ["Assembled", "SqlEmitter", "assemble", "to_sql"]

"""Preprocessing steps. Each maps its input columns to its output columns, one AST per column."""

from __future__ import annotations

import math

import numpy as np

from mlsm_py.compile import ast
from mlsm_py.errors import UnsupportedError

Columns = list[tuple[str, ast.Expr]]


def _is_missing_marker(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def function_transformer(ft, cols: Columns) -> Columns:
    # ColumnTransformer stores "passthrough" as an identity FunctionTransformer once fitted.
    if ft.func is not None:
        raise UnsupportedError(
            f"not supported: FunctionTransformer(func={getattr(ft.func, '__name__', ft.func)!r});"
            " only the identity (passthrough) can be compiled"
        )
    return cols


def simple_imputer(imp, cols: Columns) -> Columns:
    if imp.add_indicator:
        raise UnsupportedError("not supported: SimpleImputer(add_indicator=True)")
    if not _is_missing_marker(imp.missing_values):
        raise UnsupportedError(
            f"not supported: SimpleImputer(missing_values={imp.missing_values!r}); "
            "only NaN/None (SQL NULL) can be imputed"
        )
    stats = imp.statistics_
    numeric = stats.dtype.kind in "fiub"
    out: Columns = []
    for (name, expr), stat in zip(cols, stats, strict=True):
        if numeric:
            if math.isnan(float(stat)):
                # scikit-learn drops all-missing columns here; refusing is clearer than shifting.
                raise UnsupportedError(
                    f"SimpleImputer: column {name!r} had no observed values at fit time"
                )
            out.append((name, ast.CoalesceExpr(ast.as_double(expr), ast.num(stat))))
        else:
            out.append((name, ast.CoalesceExpr(ast.as_string(expr), ast.StrVal(str(stat)))))
    return out


def standard_scaler(sc, cols: Columns) -> Columns:
    out: Columns = []
    for i, (name, expr) in enumerate(cols):
        e = ast.as_double(expr)
        if sc.with_mean:
            e = ast.BinNumExpr(e, ast.num(sc.mean_[i]), ast.BinNumOpType.SUB)
        if sc.with_std:
            e = ast.BinNumExpr(e, ast.num(sc.scale_[i]), ast.BinNumOpType.DIV)
        out.append((name, e))
    return out


def one_hot_encoder(enc, cols: Columns) -> Columns:
    if enc.handle_unknown != "ignore":
        raise UnsupportedError(
            f"not supported: OneHotEncoder(handle_unknown={enc.handle_unknown!r}); SQL cannot "
            "raise on an unseen level, use handle_unknown='ignore'"
        )
    if getattr(enc, "_infrequent_enabled", False):
        raise UnsupportedError(
            "not supported: OneHotEncoder with min_frequency/max_categories (infrequent levels)"
        )
    drop_idx = enc.drop_idx_
    one, zero = ast.num(1.0), ast.num(0.0)
    out: Columns = []
    for i, ((name, expr), cats) in enumerate(zip(cols, enc.categories_, strict=True)):
        dropped = None if drop_idx is None else drop_idx[i]
        is_numeric = cats.dtype.kind in "fiub"
        src = ast.as_double(expr) if is_numeric else ast.as_string(expr)
        for j, cat in enumerate(cats):
            if dropped is not None and j == dropped:
                continue
            if _is_missing_marker(cat):
                test: ast.BoolExpr = ast.IsNullExpr(src)
            elif is_numeric:
                test = ast.CompExpr(src, ast.num(cat), ast.CompOpType.EQ)
            elif isinstance(cat, str):
                test = ast.StrEqExpr(src, cat)
            else:
                raise UnsupportedError(
                    f"OneHotEncoder: level {cat!r} of column {name!r} has type "
                    f"{type(cat).__name__}; levels must be strings or numbers"
                )
            out.append((f"{name}_{cat}", ast.IfExpr(test, one, zero)))
    return out


def numeric_or_raise(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise UnsupportedError(f"{what} holds NaN or infinite parameters")

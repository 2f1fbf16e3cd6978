"""Preprocessing steps. Each maps its input columns to its output columns, one AST per column.

Arithmetic repeats scikit-learn's float64 operations in the same order (StandardScaler
(x - mean_) / scale_, MinMaxScaler x * scale_ + min_, RobustScaler (x - center_) / scale_), so
the SQL values are the library's to the last bit. Missing values are SQL NULL (NaN on the
Python side, as mlsm_py.frames hands them to a model) and flow through scalers unchanged, as
NaN does in scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from mlsm_py.compile import ast
from mlsm_py.errors import UnsupportedError

Columns = list[tuple[str, ast.Expr]]


def _is_missing_marker(value: object) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def function_transformer(ft, cols: Columns) -> Columns:
    # ColumnTransformer stores "passthrough" as an identity FunctionTransformer once fitted.
    if ft.func is not None:
        raise UnsupportedError(
            f"not supported: FunctionTransformer(func={getattr(ft.func, '__name__', ft.func)!r});"
            " only the identity (passthrough) can be compiled"
        )
    return cols


# -- imputation ------------------------------------------------------------------------------


def simple_imputer(imp, cols: Columns) -> Columns:
    # mlsm_py.frames hands a missing value to the model as NaN (never None), and the SQL sees
    # NULL: only an imputer that treats NaN as missing fills exactly the rows the SQL fills.
    mv = imp.missing_values
    if not (isinstance(mv, float) and math.isnan(mv)):
        raise UnsupportedError(
            f"not supported: SimpleImputer(missing_values={mv!r}); only missing_values=np.nan "
            "(SQL NULL) can be imputed"
        )
    stats = imp.statistics_
    if len(stats) != len(cols):
        raise UnsupportedError(f"SimpleImputer has {len(stats)} statistics for {len(cols)} inputs")
    keeps_empty = imp.strategy == "constant" or imp.keep_empty_features
    out: Columns = []
    sources: list[ast.Expr] = []
    for (name, expr), stat in zip(cols, stats, strict=True):
        if _is_missing_marker(stat):
            if keeps_empty:
                raise UnsupportedError(
                    f"SimpleImputer: column {name!r} would be filled with a missing value"
                )
            # scikit-learn drops a column that had no observed value at fit time.
            sources.append(ast.as_double(expr))
            continue
        if _is_number(stat):
            src = ast.as_double(expr)
            out.append((name, ast.CoalesceExpr(src, ast.num(float(stat)))))
        elif isinstance(stat, str):
            src = ast.as_string(expr)
            out.append((name, ast.CoalesceExpr(src, ast.StrVal(stat))))
        else:
            raise UnsupportedError(
                f"SimpleImputer: fill value {stat!r} for column {name!r} has type "
                f"{type(stat).__name__}; fill values must be strings or numbers"
            )
        sources.append(src)
    if imp.add_indicator:
        if stats.dtype.kind not in "fiu":
            # On string columns scikit-learn appends Python booleans to an object array.
            raise UnsupportedError(
                "not supported: SimpleImputer(add_indicator=True) on string columns"
            )
        for f in imp.indicator_.features_:
            name = cols[int(f)][0]
            test = ast.IsNullExpr(sources[int(f)])
            out.append((f"missingindicator_{name}", ast.IfExpr(test, ast.num(1.0), ast.num(0.0))))
    return out


# -- scaling ---------------------------------------------------------------------------------


def _op(left: ast.Expr, value: float, op: ast.BinNumOpType) -> ast.Expr:
    return ast.BinNumExpr(left, ast.num(float(value)), op)


def _center_scale(cols: Columns, center, scale) -> Columns:
    """(x - center) / scale per column, each step left out where its array is None."""
    out: Columns = []
    for i, (name, expr) in enumerate(cols):
        e = ast.as_double(expr)
        if center is not None:
            e = _op(e, center[i], ast.BinNumOpType.SUB)
        if scale is not None:
            e = _op(e, scale[i], ast.BinNumOpType.DIV)
        out.append((name, e))
    return out


def standard_scaler(sc, cols: Columns) -> Columns:
    return _center_scale(
        cols, sc.mean_ if sc.with_mean else None, sc.scale_ if sc.with_std else None
    )


def min_max_scaler(sc, cols: Columns) -> Columns:
    lo, hi = (float(v) for v in sc.feature_range)
    out: Columns = []
    for i, (name, expr) in enumerate(cols):
        e = _op(
            _op(ast.as_double(expr), sc.scale_[i], ast.BinNumOpType.MUL),
            sc.min_[i],
            ast.BinNumOpType.ADD,
        )
        if sc.clip:
            # np.clip(x, lo, hi); a NULL (NaN) passes through the ELSE branch unchanged.
            e = ast.IdExpr(e, to_reuse=True)
            e = ast.IfExpr(
                ast.CompExpr(e, ast.num(lo), ast.CompOpType.LT),
                ast.num(lo),
                ast.IfExpr(ast.CompExpr(e, ast.num(hi), ast.CompOpType.GT), ast.num(hi), e),
            )
        out.append((name, e))
    return out


def robust_scaler(sc, cols: Columns) -> Columns:
    return _center_scale(
        cols, sc.center_ if sc.with_centering else None, sc.scale_ if sc.with_scaling else None
    )


def max_abs_scaler(sc, cols: Columns) -> Columns:
    return [
        (name, _op(ast.as_double(expr), sc.scale_[i], ast.BinNumOpType.DIV))
        for i, (name, expr) in enumerate(cols)
    ]


# -- categorical encoders --------------------------------------------------------------------
#
# An encoder maps each input column on its own: every row with the same value of column i gets
# the same block of outputs. So the encoder is compiled by asking the fitted encoder itself
# what it outputs for each known level, for a missing value and for one unseen level (all
# unseen levels are treated alike). Drop, infrequent grouping (min_frequency,
# max_categories), handle_unknown and encoded values then come out exactly as scikit-learn
# computes them, without re-deriving its rules from private attributes.


def _levels(enc, i: int, name: str) -> tuple[list, bool]:
    """Known non-missing levels of column i and whether they are numbers."""
    cats = enc.categories_[i]
    levels = [c for c in cats if not _is_missing_marker(c)]
    if cats.dtype.kind in "fiu":
        return [float(c) for c in levels], True
    if all(isinstance(c, str) for c in levels):
        return list(levels), False
    bad = next(c for c in levels if not isinstance(c, str))
    raise UnsupportedError(
        f"{type(enc).__name__}: level {bad!r} of column {name!r} has type {type(bad).__name__}; "
        "levels must all be strings or all be numbers"
    )


def _unseen(levels: list, numeric: bool) -> Any:
    if numeric:
        return next(
            v for v in (1.2345678e-7, -9.87654321e5, 3.14159e11, 2.5e-250) if v not in levels
        )
    value = "__mlsm_unseen__"
    while value in levels:
        value += "_"
    return value


def _probe(enc, columns: list[tuple[list, bool]], i: int, values: list) -> np.ndarray:
    """enc.transform of rows that vary column i only (the others hold a known level)."""
    data = {}
    for k, (levels, numeric) in enumerate(columns):
        fill = levels[0] if levels else np.nan
        col = values if k == i else [fill] * len(values)
        data[k] = pd.Series(col, dtype="float64" if numeric else object)
    names = getattr(enc, "feature_names_in_", None)
    if names is not None:
        frame: Any = pd.DataFrame({str(n): data[k] for k, n in enumerate(names)})
    elif all(numeric for _, numeric in columns):
        frame = np.column_stack([data[k].to_numpy() for k in range(len(columns))])
    else:
        frame = np.column_stack([data[k].to_numpy(dtype=object) for k in range(len(columns))])
    with warnings.catch_warnings():
        # handle_unknown="warn" (and drop with "ignore") warn about the unseen probe.
        warnings.simplefilter("ignore", UserWarning)
        out = enc.transform(frame)
    out = out.toarray() if sparse.issparse(out) else np.asarray(out)
    return out.astype("float64")


def _any(tests: list[ast.BoolExpr]) -> ast.BoolExpr:
    # Balanced, so hundreds of levels do not nest hundreds deep (DuckDB's depth limit).
    if len(tests) == 1:
        return tests[0]
    mid = len(tests) // 2
    return ast.OrExpr(_any(tests[:mid]), _any(tests[mid:]))


def _lookup(
    src: ast.Expr,
    levels: list,
    numeric: bool,
    values: np.ndarray,
    missing: float,
    unseen: float,
) -> ast.Expr:
    """CASE over the levels: each distinct output value once, with the levels that give it;
    the unseen-level value is the ELSE (a NULL input reaches it when missing is unseen). A NaN
    output (OrdinalEncoder's default encoded_missing_value, or unknown_value=np.nan) is NULL:
    the model downstream routes it as missing, as the library routes the NaN."""

    def key(v: float) -> float | None:  # NaN != NaN: group NaN outputs under one key
        return None if math.isnan(v) else float(v)

    groups: dict[float | None, list[ast.BoolExpr]] = {}
    for level, v in zip(levels, values, strict=True):
        if key(v) != key(unseen):
            test = (
                ast.CompExpr(src, ast.num(level), ast.CompOpType.EQ)
                if numeric
                else ast.StrEqExpr(src, level)
            )
            groups.setdefault(key(v), []).append(test)
    if key(missing) != key(unseen):
        groups.setdefault(key(missing), []).append(ast.IsNullExpr(src))
    expr: ast.Expr = ast.num_or_null(unseen)
    for k, tests in reversed(list(groups.items())):
        value = ast.NullVal() if k is None else ast.num(k)
        expr = ast.IfExpr(_any(tests), value, expr)
    return expr


def _encode(enc, cols: Columns, widths: list[int], names_out: list[str]) -> Columns:
    what = type(enc).__name__
    if enc.handle_unknown == "error":
        raise UnsupportedError(
            f"not supported: {what}(handle_unknown='error'); SQL cannot raise on an unseen "
            "level. Use handle_unknown='ignore' or 'infrequent_if_exist' (OneHotEncoder) or "
            "'use_encoded_value' (OrdinalEncoder)"
        )
    if len(enc.categories_) != len(cols):
        raise UnsupportedError(f"{what} has {len(enc.categories_)} columns for {len(cols)} inputs")
    columns = [_levels(enc, i, name) for i, (name, _) in enumerate(cols)]
    out: Columns = []
    start = 0
    for i, ((_name, expr), (levels, numeric)) in enumerate(zip(cols, columns, strict=True)):
        unseen = _unseen(levels, numeric)
        block = _probe(enc, columns, i, [*levels, np.nan, unseen])[:, start : start + widths[i]]
        src = ast.as_double(expr) if numeric else ast.as_string(expr)
        for j in range(widths[i]):
            v = block[:, j]
            e = _lookup(src, levels, numeric, v[:-2], v[-2], v[-1])
            out.append((names_out[start + j], e))
        start += widths[i]
    return out


def one_hot_encoder(enc, cols: Columns) -> Columns:
    widths = [int(w) for w in enc._n_features_outs]
    try:
        names = [str(n) for n in enc.get_feature_names_out([n for n, _ in cols])]
    except (ValueError, AttributeError):
        names = [f"{n}_{j}" for (n, _), w in zip(cols, widths, strict=True) for j in range(w)]
    return _encode(enc, cols, widths, names)


def ordinal_encoder(enc, cols: Columns) -> Columns:
    return _encode(enc, cols, [1] * len(cols), [n for n, _ in cols])


def numeric_or_raise(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise UnsupportedError(f"{what} holds NaN or infinite parameters")

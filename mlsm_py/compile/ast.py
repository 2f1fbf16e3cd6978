"""AST nodes. m2cgen's numeric nodes are reused as they are; the nodes below add what a warehouse
needs and m2cgen lacks: columns by name with a declared SQL type, NULL tests, string equality and
boolean OR (for LightGBM's "zero or missing" routing)."""

from __future__ import annotations

import math
from typing import Literal

from m2cgen import ast as m2

# Re-exported so assemblers import every node type from one place.
BinNumExpr = m2.BinNumExpr
BinNumOpType = m2.BinNumOpType
CompExpr = m2.CompExpr
CompOpType = m2.CompOpType
ExpExpr = m2.ExpExpr
Expr = m2.Expr
IdExpr = m2.IdExpr
IfExpr = m2.IfExpr
NumVal = m2.NumVal
BoolExpr = m2.BoolExpr
AbsExpr = m2.AbsExpr

ColumnType = Literal["double", "string"]


class ColumnRef(m2.Expr):
    """An input column by name. `sql_type` is None until a consumer declares how it reads it."""

    output_size = 1

    def __init__(self, name: str, sql_type: ColumnType | None = None):
        self.name = name
        self.sql_type = sql_type

    def __str__(self) -> str:
        return f"ColumnRef({self.name!r},{self.sql_type})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is ColumnRef and self.name == other.name and self.sql_type == other.sql_type
        )

    def __hash__(self) -> int:
        return hash((ColumnRef, self.name, self.sql_type))


class StrVal(m2.Expr):
    """A string literal (a category level)."""

    output_size = 1

    def __init__(self, value: str):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is StrVal and self.value == other.value

    def __hash__(self) -> int:
        return hash((StrVal, self.value))


class IsNullExpr(m2.BoolExpr):
    """True when the value is missing (NULL; NaN inputs are normalised to NULL on the way in)."""

    output_size = 1

    def __init__(self, expr: m2.Expr):
        self.expr = expr

    def __eq__(self, other: object) -> bool:
        return type(other) is IsNullExpr and self.expr == other.expr

    def __hash__(self) -> int:
        return hash((IsNullExpr, self.expr))


class StrEqExpr(m2.BoolExpr):
    """String equality; NULL on either side makes it not-true, as in SQL."""

    output_size = 1

    def __init__(self, expr: m2.Expr, value: str):
        self.expr = expr
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is StrEqExpr and (self.expr, self.value) == (other.expr, other.value)

    def __hash__(self) -> int:
        return hash((StrEqExpr, self.expr, self.value))


class OrExpr(m2.BoolExpr):
    output_size = 1

    def __init__(self, left: m2.BoolExpr, right: m2.BoolExpr):
        self.left = left
        self.right = right

    def __eq__(self, other: object) -> bool:
        return type(other) is OrExpr and (self.left, self.right) == (other.left, other.right)

    def __hash__(self) -> int:
        return hash((OrExpr, self.left, self.right))


class AndExpr(m2.BoolExpr):
    output_size = 1

    def __init__(self, left: m2.BoolExpr, right: m2.BoolExpr):
        self.left = left
        self.right = right

    def __eq__(self, other: object) -> bool:
        return type(other) is AndExpr and (self.left, self.right) == (other.left, other.right)

    def __hash__(self) -> int:
        return hash((AndExpr, self.left, self.right))


class NotExpr(m2.BoolExpr):
    output_size = 1

    def __init__(self, expr: m2.BoolExpr):
        self.expr = expr

    def __eq__(self, other: object) -> bool:
        return type(other) is NotExpr and self.expr == other.expr

    def __hash__(self) -> int:
        return hash((NotExpr, self.expr))


class CoalesceExpr(m2.Expr):
    """The value, or `default` when it is missing (SimpleImputer, LightGBM's NaN-as-zero)."""

    output_size = 1

    def __init__(self, expr: m2.Expr, default: m2.Expr):
        self.expr = expr
        self.default = default

    def __eq__(self, other: object) -> bool:
        return type(other) is CoalesceExpr and (self.expr, self.default) == (
            other.expr,
            other.default,
        )

    def __hash__(self) -> int:
        return hash((CoalesceExpr, self.expr, self.default))


class SigmoidExpr(m2.Expr):
    """Logistic function, emitted so that it saturates to exactly 0 or 1 and never overflows."""

    output_size = 1

    def __init__(self, expr: m2.Expr):
        self.expr = expr

    def __eq__(self, other: object) -> bool:
        return type(other) is SigmoidExpr and self.expr == other.expr

    def __hash__(self) -> int:
        return hash((SigmoidExpr, self.expr))


class Float32Expr(m2.Expr):
    """`expr` rounded to the nearest float32 (ties to even), read back as a double: one step of
    float32 arithmetic (XGBoost). Callers keep `expr` where every engine rounds it without
    raising: no finite value that rounds past FLT_MAX (DuckDB and PostgreSQL raise on float32
    overflow), and no non-zero value that rounds to 0, |expr| <= 2**-150 (PostgreSQL raises on
    underflow)."""

    output_size = 1

    def __init__(self, expr: m2.Expr):
        self.expr = expr

    def __eq__(self, other: object) -> bool:
        return type(other) is Float32Expr and self.expr == other.expr

    def __hash__(self) -> int:
        return hash((Float32Expr, self.expr))


class MaxExpr(m2.Expr):
    """The largest of several values (`greatest`); used to stabilise softmax."""

    output_size = 1

    def __init__(self, exprs: list[m2.Expr]):
        self.exprs = list(exprs)

    def __eq__(self, other: object) -> bool:
        return type(other) is MaxExpr and self.exprs == other.exprs

    def __hash__(self) -> int:
        return hash((MaxExpr, tuple(self.exprs)))


class ArgMaxExpr(m2.Expr):
    """The label of the first largest value, as numpy.argmax picks it (ties go to the first)."""

    output_size = 1

    def __init__(self, exprs: list[m2.Expr], labels: list[str | int | float]):
        if len(exprs) != len(labels) or not exprs:
            raise ValueError("ArgMaxExpr needs one label per value")
        self.exprs = list(exprs)
        self.labels = list(labels)

    def __eq__(self, other: object) -> bool:
        return type(other) is ArgMaxExpr and (self.exprs, self.labels) == (
            other.exprs,
            other.labels,
        )

    def __hash__(self) -> int:
        return hash((ArgMaxExpr, tuple(self.exprs), tuple(self.labels)))


class NullVal(m2.Expr):
    """A missing number: SQL NULL, which stands for the NaN the library produces (the project's
    convention: a NULL input is a NaN input, 0005). An encoder that outputs NaN (OrdinalEncoder's
    default encoded_missing_value, unknown_value=np.nan) yields it, and the model downstream
    routes it as missing, as it routes the NaN."""

    output_size = 1

    def __eq__(self, other: object) -> bool:
        return type(other) is NullVal

    def __hash__(self) -> int:
        return hash(NullVal)


class IndexExpr(m2.Expr):
    """`values[expr]`: a constant list indexed by an integer-valued, never-NULL expression (a
    tree's leaf id), 0-based. One array lookup where a CASE would test the id against each
    leaf: reason codes read one per tree and input (decision 0021)."""

    output_size = 1

    def __init__(self, expr: m2.Expr, values: list[float]):
        if not values:
            raise ValueError("IndexExpr needs at least one value")
        self.expr = expr
        self.values = tuple(float(v) for v in values)

    def __eq__(self, other: object) -> bool:
        return type(other) is IndexExpr and (self.expr, self.values) == (other.expr, other.values)

    def __hash__(self) -> int:
        return hash((IndexExpr, self.expr, self.values))


def children(node: m2.Expr) -> list[m2.Expr]:
    """The direct sub-expressions of any node, m2cgen's or ours (by their attribute names)."""
    out = [
        child
        for attr in ("expr", "left", "right", "test", "body", "orelse", "default")
        if isinstance(child := getattr(node, attr, None), m2.Expr)
    ]
    out.extend(getattr(node, "exprs", ()))
    return out


def num(value: float) -> m2.NumVal:
    return m2.NumVal(float(value))


def num_or_null(value: float) -> m2.NumVal | NullVal:
    """A library output value: NaN (a missing number) becomes NullVal."""
    return NullVal() if math.isnan(value) else num(value)


def add_all(terms: list[m2.Expr]) -> m2.Expr:
    """Left-to-right sum, the order numpy and the tree libraries accumulate in."""
    out = terms[0]
    for t in terms[1:]:
        out = m2.BinNumExpr(out, t, m2.BinNumOpType.ADD)
    return out


def as_double(expr: m2.Expr) -> m2.Expr:
    """Declare that `expr` is read as a number (fixes an untyped input column to DOUBLE)."""
    if type(expr) is ColumnRef and expr.sql_type is None:
        return ColumnRef(expr.name, "double")
    return expr


def as_string(expr: m2.Expr) -> m2.Expr:
    if type(expr) is ColumnRef and expr.sql_type is None:
        return ColumnRef(expr.name, "string")
    return expr


SOFTMAX_FLOOR = -700.0


def softmax(margins: list[m2.Expr]) -> list[m2.Expr]:
    """Class probabilities from raw margins, computed as scikit-learn's `softmax` does:
    subtract the largest margin, exponentiate, divide by the sum (so exp() never overflows).
    Every intermediate is a shared column, so each margin is computed once."""
    zs = [m if isinstance(m, m2.IdExpr) and m.to_reuse else m2.IdExpr(m, True) for m in margins]
    top = m2.IdExpr(MaxExpr(zs), True)
    # exp() of a margin far below the top one is clamped at exp(-700) ~ 1e-304 instead of
    # underflowing: PostgreSQL raises on exp() underflow. The probability moves by < 1e-300.
    floor = num(SOFTMAX_FLOOR)
    es = [
        m2.IdExpr(m2.ExpExpr(MaxExpr([m2.BinNumExpr(z, top, m2.BinNumOpType.SUB), floor])), True)
        for z in zs
    ]
    total = m2.IdExpr(add_all(es), True)
    return [m2.BinNumExpr(e, total, m2.BinNumOpType.DIV) for e in es]

"""AST -> one Python function, the compiler's second target (as m2cgen targets several
languages from one AST): the serving API scores a record with it in-process, because a
warehouse re-plans every statement (a 200-tree model takes ~0.17 s to plan in DuckDB) and a
request has a few milliseconds.

The function reproduces the SQL the emitter writes, value for value:

- A missing number is NaN, a missing string None, exactly where the SQL has NULL: inputs are
  read as the SQL reads them (a NaN input is NULL there, NaN here), and NaN propagates through
  arithmetic as NULL does.
- A CASE takes its THEN branch only when the test is TRUE. A test is compiled twice, as "is
  TRUE" and as "is FALSE" (`_truth`, `_falsity`): a comparison with a missing value is neither,
  so NOT, AND and OR keep SQL's three-valued logic where plain Python booleans would not.
- Sums are added in the SQL's order and grouping (layout.chunks), shared sub-expressions
  (IdExpr to_reuse) are computed once into locals, the sigmoid is the SQL's saturating form and
  float32 rounding is IEEE round-to-nearest-even, so results agree to the last bit on ordinary
  rows.

Generated source is kept shallow: CPython's compiler recurses per nesting level and gives up
near 1,000, so deep expressions and long CASE chains are split into statements (`_MAX_DEPTH`,
`_MAX_CHAIN`). Generated code evaluates only AST built by our assemblers from a sha256-checked
artifact; literals are written with repr().
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlsm_py.compile import ast, layout
from mlsm_py.compile.emitter import SIGMOID_HIGH, SIGMOID_LOW
from mlsm_py.errors import UnsupportedError

_MAX_DEPTH = 40  # nesting levels of one expression before a sub-expression becomes a local
_MAX_CHAIN = 120  # branches of one conditional-expression chain before it is split
_NAN = math.nan
_INF = math.inf

_OPS = {
    ast.CompOpType.LT: "<",
    ast.CompOpType.LTE: "<=",
    ast.CompOpType.GT: ">",
    ast.CompOpType.GTE: ">=",
    ast.CompOpType.EQ: "==",
    ast.CompOpType.NOT_EQ: "!=",
}
# "a OP b is FALSE" for ordered comparisons: the complement, which is also not-true for NaN.
_ORDERED_COMPLEMENT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_BIN = {
    ast.BinNumOpType.ADD: "+",
    ast.BinNumOpType.SUB: "-",
    ast.BinNumOpType.MUL: "*",
}


# -- runtime helpers the generated code calls (SQL semantics where Python's differ) ----------
def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:  # the engines return +inf
        return _INF


def _div(a: float, b: float) -> float:
    """IEEE division, as the engines do it (x/0 is +-inf, 0/0 NaN), not ZeroDivisionError."""
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0:
            return _NAN
        return math.copysign(_INF, a) * math.copysign(1.0, b)


_PACK = struct.Struct("f")


def _f32(x: float) -> float:
    try:
        return _PACK.unpack(_PACK.pack(x))[0]
    except OverflowError:  # past FLT_MAX; assemblers keep values in range (ast.Float32Expr)
        return math.copysign(_INF, x)


def _greatest(*xs: float) -> float:
    """greatest() ignores NULLs on every engine; NULL only when all are NULL."""
    known = [x for x in xs if x == x]
    return max(known) if known else _NAN


def _argmax(values: Sequence[float], labels: Sequence[Any]) -> Any:
    """The SQL's CASE: NULL when the first value is NULL, else the first value >= every later
    one (numpy's first-maximum rule), else the last label."""
    if values[0] != values[0]:
        return None
    n = len(values)
    for i in range(n - 1):
        if all(values[i] >= values[j] for j in range(i + 1, n)):
            return labels[i]
    return labels[-1]


_RUNTIME = {
    "_exp": _exp,
    "_div": _div,
    "_f32": _f32,
    "_greatest": _greatest,
    "_argmax": _argmax,
    "_NAN": _NAN,
    "_INF": _INF,
}


@dataclass(frozen=True)
class PythonModel:
    """A compiled model as a Python function over one record.

    `inputs` are the columns read, sorted by name, each "double" or "string"; `outputs` the
    output names, in the order the function returns them."""

    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    source: str
    fn: Callable[..., tuple]

    def score(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return dict(zip(self.outputs, self.fn(*self.args(record)), strict=True))

    def score_many(self, records: Iterable[Mapping[str, Any]]) -> list[tuple]:
        fn, args = self.fn, self.args
        return [fn(*args(r)) for r in records]

    def args(self, record: Mapping[str, Any]) -> list[Any]:
        """The record's inputs as the SQL reads them: numbers as float (missing -> NaN),
        strings as str (missing -> None). A number read as a string is written the way the
        warehouse casts it (3 -> '3')."""
        out: list[Any] = []
        for name, kind in self.inputs:
            v = record.get(name)
            if kind == "double":
                out.append(_NAN if v is None else float(v))
            else:
                out.append(None if v is None or v != v else _as_text(v))
        return out


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return repr(v)  # CAST(3.0 AS VARCHAR) is '3.0'
    return str(v)


def compile_python(outputs: Sequence[tuple[str, ast.Expr]], name: str = "score") -> PythonModel:
    """One function computing `outputs` (name, expression) from the columns they read."""
    em = _Emitter()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        results = [em.value(e, 0) for _, e in outputs]
    finally:
        sys.setrecursionlimit(limit)
    inputs = tuple(sorted(em.inputs.items()))
    params = ", ".join(em.arg(n) for n, _ in inputs)
    lines = [
        "# Generated by mlsm from the compiled model's AST; the same AST renders the SQL.",
        f"def {name}({params}):",
        *(f"    {line}" for line in em.lines),
        f"    return ({', '.join(results)},)",
    ]
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = dict(_RUNTIME)
    exec(compile(source, f"<mlsm:{name}>", "exec"), namespace)  # noqa: S102 - our own AST
    return PythonModel(inputs, tuple(n for n, _ in outputs), source, namespace[name])


class _Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.inputs: dict[str, str] = {}
        self._args: dict[str, str] = {}
        self._shared: dict[int, str] = {}
        self._tmp = 0

    def arg(self, column: str) -> str:
        return self._args.setdefault(column, f"x{len(self._args)}")

    def _local(self, text: str) -> str:
        name = f"v{self._tmp}"
        self._tmp += 1
        self.lines.append(f"{name} = {text}")
        return name

    # -- values ------------------------------------------------------------------------------
    def value(self, node: ast.Expr, depth: int) -> str:
        if depth > _MAX_DEPTH and not isinstance(node, ast.ColumnRef | ast.NumVal | ast.StrVal):
            return self._local(self.value(node, 0))
        method = getattr(self, f"_v_{type(node).__name__}", None)
        if method is None:
            raise UnsupportedError(
                f"the Python emitter has no rule for AST node {type(node).__name__}"
            )
        return method(node, depth + 1)

    def _v_IdExpr(self, node: ast.IdExpr, depth: int) -> str:
        if not node.to_reuse:
            return self.value(node.expr, depth)
        got = self._shared.get(id(node))
        if got is None:
            got = self._local(self.value(node.expr, 0))
            self._shared[id(node)] = got
        return got

    def _v_ColumnRef(self, node: ast.ColumnRef, depth: int) -> str:
        if node.sql_type is None:
            raise UnsupportedError(f"input column {node.name!r} is read without a declared type")
        prev = self.inputs.setdefault(node.name, node.sql_type)
        if prev != node.sql_type:
            raise UnsupportedError(
                f"input column {node.name!r} is read both as {prev} and as {node.sql_type}"
            )
        return self.arg(node.name)

    def _v_NumVal(self, node: ast.NumVal, depth: int) -> str:
        v = float(node.value)
        if math.isnan(v):
            return "_NAN"
        if math.isinf(v):
            return "_INF" if v > 0 else "(-_INF)"
        return f"({v!r})" if v < 0 or (v == 0 and math.copysign(1, v) < 0) else repr(v)

    def _v_NullVal(self, node: ast.NullVal, depth: int) -> str:
        return "_NAN"

    def _v_StrVal(self, node: ast.StrVal, depth: int) -> str:
        return repr(node.value)

    def _v_BinNumExpr(self, node: ast.BinNumExpr, depth: int) -> str:
        if node.op == ast.BinNumOpType.ADD:
            terms = layout.flatten_sum(node)
            texts = [self.value(t, depth) for t in terms]

            def build(group: list | int) -> str:
                if isinstance(group, int):
                    return texts[group]
                return "(" + " + ".join(build(g) for g in group) + ")"

            # The SQL emitter's grouping, so the additions happen in the same order.
            return build(layout.chunks(len(texts), layout.SUM_CHUNK))
        left, right = self.value(node.left, depth), self.value(node.right, depth)
        if node.op == ast.BinNumOpType.DIV:
            divisor = node.right
            if isinstance(divisor, ast.NumVal) and float(divisor.value) != 0.0:
                return f"({left} / {right})"
            return f"_div({left}, {right})"
        return f"({left} {_BIN[node.op]} {right})"

    def _v_AbsExpr(self, node: ast.AbsExpr, depth: int) -> str:
        return f"abs({self.value(node.expr, depth)})"

    def _v_ExpExpr(self, node: ast.ExpExpr, depth: int) -> str:
        return f"_exp({self.value(node.expr, depth)})"

    def _v_Float32Expr(self, node: ast.Float32Expr, depth: int) -> str:
        # XGBoost's running float32 sum nests one Float32Expr per boosting round: walked as a
        # loop of statements, not one recursion (and one nesting level) per round.
        chain: list[ast.Float32Expr] = []
        cur: ast.Expr = node
        while isinstance(cur, ast.Float32Expr):
            chain.append(cur)
            inner = cur.expr
            nxt = inner.left if isinstance(inner, ast.BinNumExpr) else None
            while isinstance(nxt, ast.IdExpr) and not nxt.to_reuse:
                nxt = nxt.expr
            if not isinstance(nxt, ast.Float32Expr) or len(chain) > 10_000:
                break
            cur = nxt
        if len(chain) < 3:
            return f"_f32({self.value(node.expr, depth)})"
        innermost = chain[-1]
        acc = self._local(f"_f32({self.value(innermost.expr, 0)})")
        for link in reversed(chain[:-1]):
            e = link.expr
            op = _BIN.get(e.op) if isinstance(e, ast.BinNumExpr) else None
            if op is None:  # not a running sum after all: plain recursion
                return f"_f32({self.value(node.expr, depth)})"
            right = self.value(e.right, 0)
            self.lines.append(f"{acc} = _f32({acc} {op} {right})")
        return acc

    def _v_CoalesceExpr(self, node: ast.CoalesceExpr, depth: int) -> str:
        a = self.value(node.expr, depth)
        if not a.isidentifier():
            a = self._local(a)
        b = self.value(node.default, depth)
        if self._is_string(node.expr):
            return f"({a} if {a} is not None else {b})"
        return f"({a} if {a} == {a} else {b})"

    def _v_IndexExpr(self, node: ast.IndexExpr, depth: int) -> str:
        # A tuple of constants is one constant to CPython: indexing it is one operation.
        values = ", ".join(self._v_NumVal(ast.num(v), depth) for v in node.values)
        return f"({values},)[int({self.value(node.expr, depth)})]"

    def _v_MaxExpr(self, node: ast.MaxExpr, depth: int) -> str:
        return "_greatest(" + ", ".join(self.value(e, depth) for e in node.exprs) + ")"

    def _v_ArgMaxExpr(self, node: ast.ArgMaxExpr, depth: int) -> str:
        values = ", ".join(self.value(e, depth) for e in node.exprs)
        return f"_argmax(({values},), {tuple(node.labels)!r})"

    def _v_SigmoidExpr(self, node: ast.SigmoidExpr, depth: int) -> str:
        z = self.value(node.expr, depth)
        if not z.isidentifier():
            z = self._local(z)
        hi, lo = repr(SIGMOID_HIGH), repr(SIGMOID_LOW)
        return (
            f"(1.0 if {z} > {hi} else 1.0 / (1.0 + _exp(-{z})) if {z} >= 0.0 "
            f"else 0.0 if {z} < ({lo}) else _exp({z}) / (1.0 + _exp({z})))"
        )

    def _v_IfExpr(self, node: ast.IfExpr, depth: int) -> str:
        branches: list[tuple[ast.Expr, ast.Expr]] = []
        cur: ast.Expr = node
        while isinstance(cur, ast.IfExpr):
            branches.append((cur.test, cur.body))
            cur = cur.orelse
        tail = self.value(cur, depth)
        # Built from the end, split every _MAX_CHAIN branches into a local.
        for start in range(len(branches) - 1, -1, -_MAX_CHAIN):
            group = branches[max(0, start - _MAX_CHAIN + 1) : start + 1]
            parts = [
                f"{self.value(body, depth)} if {self._truth(test, depth)}" for test, body in group
            ]
            tail = "(" + " else ".join(parts) + f" else {tail})"
            if start - _MAX_CHAIN + 1 > 0:
                tail = self._local(tail)
        return tail

    # -- tests: "is TRUE" and "is FALSE" -----------------------------------------------------
    def _truth(self, node: ast.Expr, depth: int) -> str:
        if isinstance(node, ast.CompExpr):
            a, b = self.value(node.left, depth), self.value(node.right, depth)
            return f"({a} {_OPS[node.op]} {b})"
        if isinstance(node, ast.StrEqExpr):
            return f"({self.value(node.expr, depth)} == {node.value!r})"
        if isinstance(node, ast.IsNullExpr):
            return self._is_null(node.expr, depth)
        if isinstance(node, ast.AndExpr):
            return f"({self._truth(node.left, depth)} and {self._truth(node.right, depth)})"
        if isinstance(node, ast.OrExpr):
            return f"({self._truth(node.left, depth)} or {self._truth(node.right, depth)})"
        if isinstance(node, ast.NotExpr):
            return self._falsity(node.expr, depth)
        raise UnsupportedError(f"the Python emitter cannot test AST node {type(node).__name__}")

    def _falsity(self, node: ast.Expr, depth: int) -> str:
        if isinstance(node, ast.CompExpr):
            a, b = self.value(node.left, depth), self.value(node.right, depth)
            op = _OPS[node.op]
            if op in _ORDERED_COMPLEMENT:
                return f"({a} {_ORDERED_COMPLEMENT[op]} {b})"
            a, b = (x if x.isidentifier() or _literal(x) else self._local(x) for x in (a, b))
            known = f"{a} == {a} and {b} == {b}"
            return f"({a} != {b} and {known})" if op == "==" else f"({a} == {b})"
        if isinstance(node, ast.StrEqExpr):
            s = self.value(node.expr, depth)
            if not s.isidentifier():
                s = self._local(s)
            return f"({s} is not None and {s} != {node.value!r})"
        if isinstance(node, ast.IsNullExpr):
            return f"(not {self._is_null(node.expr, depth)})"
        if isinstance(node, ast.AndExpr):
            return f"({self._falsity(node.left, depth)} or {self._falsity(node.right, depth)})"
        if isinstance(node, ast.OrExpr):
            return f"({self._falsity(node.left, depth)} and {self._falsity(node.right, depth)})"
        if isinstance(node, ast.NotExpr):
            return self._truth(node.expr, depth)
        raise UnsupportedError(f"the Python emitter cannot test AST node {type(node).__name__}")

    def _is_null(self, expr: ast.Expr, depth: int) -> str:
        v = self.value(expr, depth)
        if self._is_string(expr):
            return f"({v} is None)"
        if not v.isidentifier():
            v = self._local(v)
        return f"({v} != {v})"

    def _is_string(self, node: ast.Expr) -> bool:
        while isinstance(node, ast.IdExpr | ast.CoalesceExpr | ast.IfExpr):
            node = node.body if isinstance(node, ast.IfExpr) else node.expr
        if isinstance(node, ast.ColumnRef):
            return node.sql_type == "string"
        return isinstance(node, ast.StrVal)


def _literal(text: str) -> bool:
    try:
        float(text.strip("()"))
        return True
    except ValueError:
        return False

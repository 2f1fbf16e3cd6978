"""AST -> one SQL SELECT, built as sqlglot expressions and rendered once per dialect.

Layout (see docs/decisions/0003-sql-layout.md):

    with inputs  as (select key, <each input column typed, NaN -> NULL> from <table>),
         stage_1 as (select *, <shared sub-expressions that use only inputs> from inputs),
         stage_2 as (select *, <shared sub-expressions that use stage_1 columns> from stage_1)
    select key, <score> as score from stage_2

Shared sub-expressions are the nodes an assembler marked `IdExpr(to_reuse=True)`: each tree of an
ensemble, a linear margin. They become columns, so no expression is written twice and no single
expression nests deeper than one tree.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from mlsm_py.compile import ast, layout
from mlsm_py.compile.assemblers import Assembled
from mlsm_py.compile.layout import DEFAULT_LAYOUT, Layout
from mlsm_py.errors import UnsupportedError

REUSE_PREFIX = "__mlsm_"
DIALECTS = ("duckdb", "postgres", "spark")

# Above SIGMOID_HIGH the logistic function is exactly 1.0 in float64; below SIGMOID_LOW it is
# under 1e-304. Saturating there keeps exp() in range on every engine (PostgreSQL raises on
# exp() overflow and underflow, DuckDB returns inf).
SIGMOID_HIGH = 40.0
SIGMOID_LOW = -700.0
SMALLEST_NORMAL = sys.float_info.min  # 2.2250738585072014e-308


@dataclass
class _Column:
    name: str
    level: int
    sql: exp.Expression


@dataclass
class _State:
    reused: dict[int, _Column] = field(default_factory=dict)
    order: list[_Column] = field(default_factory=list)
    levels: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)


class SqlEmitter:
    """Visitor from AST nodes to sqlglot expressions, for the SQL DuckDB and Spark share.
    A dialect that differs is a subclass overriding only the hooks it needs (`literal`,
    `typed_double`, `finish`), as ibis has one compiler per backend; `SqlEmitter(dialect)`
    returns the dialect's own class."""

    dialect = "duckdb"
    _classes: dict[str, type[SqlEmitter]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "dialect" in cls.__dict__:  # a dialect's class, not a variant of one (bench/)
            SqlEmitter._classes.setdefault(cls.dialect, cls)

    def __new__(cls, dialect: str | None = None, layout: Layout = DEFAULT_LAYOUT):
        if cls is SqlEmitter:
            name = dialect or "duckdb"
            if name not in DIALECTS:
                raise UnsupportedError(
                    f"dialect {name!r} is not supported; supported: {', '.join(DIALECTS)}"
                )
            cls = SqlEmitter._classes[name]
        return super().__new__(cls)

    def __init__(self, dialect: str | None = None, layout: Layout = DEFAULT_LAYOUT):
        self.layout = layout

    # -- what a dialect overrides ------------------------------------------------------------
    def literal(self, lit: exp.Expression) -> exp.Expression:
        """A finite double literal (`1.5E0`, maybe negated) as this dialect must write it."""
        return lit

    def typed_double(self, typed: exp.Expression) -> exp.Expression:
        """A double input after NaN became NULL."""
        return typed

    def finish(self, tree: exp.Select) -> exp.Select:
        """The whole statement, before it is rendered."""
        return tree

    # -- literals and types ------------------------------------------------------------------
    def double_type(self) -> exp.DataType:
        return exp.DataType.build("double")

    def number(self, value: float) -> exp.Expression:
        value = float(value)
        if not math.isfinite(value):
            text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return exp.cast(exp.Literal.string(text), self.double_type())
        # repr() is the shortest text that round-trips; the exponent makes DuckDB and Spark read
        # a DOUBLE, not a DECIMAL (see docs/decisions/0004-double-literals.md).
        text = repr(abs(value))
        if "e" not in text and "inf" not in text:
            text += "E0"
        lit: exp.Expression = exp.Literal.number(text)
        # sqlglot spaces binary operators, so "a - -1.5E0" never becomes a "--" comment.
        lit = exp.Neg(this=lit) if math.copysign(1.0, value) < 0 else lit
        return self.literal(lit)

    # -- the statement -----------------------------------------------------------------------
    def select(
        self,
        assembled: Assembled,
        table: str | exp.Table,
        key: str | None,
        constants: dict[str, str | int] | None = None,
    ) -> exp.Select:
        """`constants` are literal columns placed after the key (model name, version, ...)."""
        state = _State()
        outputs = [
            exp.alias_(self._visit(e, state), self._output_name(n)) for n, e in assembled.outputs()
        ]
        check_names(list(state.inputs), key)
        source = exp.to_table(table) if isinstance(table, str) else table
        key_col = [self._col(key)] if key is not None else []
        input_cols = [
            self._typed_input(n, t, n in assembled.finite) for n, t in sorted(state.inputs.items())
        ]
        query = exp.select(*key_col, *input_cols).from_(source)
        ctes: list[tuple[str, exp.Expression]] = [("inputs", query)]
        previous = "inputs"
        for i, stage in enumerate(self._stages(state), start=1):
            cols = [exp.alias_(c.sql, exp.to_identifier(c.name, quoted=True)) for c in stage]
            name = f"stage_{i}"
            ctes.append((name, exp.select(exp.Star(), *cols).from_(previous)))
            previous = name
        consts = [
            exp.alias_(
                exp.Literal.string(v) if isinstance(v, str) else exp.Literal.number(int(v)),
                exp.to_identifier(k, quoted=True),
            )
            for k, v in (constants or {}).items()
        ]
        out = exp.select(*key_col, *consts, *outputs).from_(previous)
        # copy=False: with_ copies the whole statement per call otherwise, which for a large
        # ensemble's stages made rendering quadratic (500-round XGBoost: 38.5 s -> 9.7 s).
        for name, body in ctes:
            out = out.with_(name, as_=body, copy=False)
        return out

    def render(
        self,
        assembled: Assembled,
        table: str | exp.Table,
        key: str | None,
        constants: dict[str, str | int] | None = None,
    ) -> str:
        tree = self.finish(self.select(assembled, table, key, constants))
        tree, multiline = _protect_multiline_identifiers(tree)
        # Left-deep sums of many trees recurse deeply in sqlglot's generator.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20000))
        try:
            sql = tree.sql(dialect=self.dialect, pretty=True, normalize_functions="lower")
        finally:
            sys.setrecursionlimit(limit)
        for token, original in multiline.items():
            quoted = exp.to_identifier(original, quoted=True).sql(dialect=self.dialect)
            sql = sql.replace(token, quoted)
        return sql

    @staticmethod
    def _output_name(name: str) -> exp.Identifier:
        # Plain lower-case names stay bare (readable, and fold the same on every engine);
        # anything else (a class label with capitals, spaces, quotes) is quoted.
        plain = re.fullmatch(r"[a-z_][a-z0-9_]*", name) is not None
        return exp.to_identifier(name, quoted=not plain)

    # -- visitor -----------------------------------------------------------------------------
    def _col(self, name: str) -> exp.Column:
        return exp.column(exp.to_identifier(name, quoted=True))

    def _typed_input(self, name: str, sql_type: str, finite: bool = False) -> exp.Expression:
        col = self._col(name)
        if sql_type == "double" and finite:
            # The contract's `finite` check keeps NaN out of scoring: no per-row step (for a
            # logistic regression on 20 columns it was 40% of the statement's time).
            typed = self.typed_double(exp.cast(col, self.double_type()))
        elif sql_type == "double":
            # NaN is missing, as in scikit-learn and LightGBM: it must take the NULL route, and
            # NaN = NaN holds on DuckDB, PostgreSQL and Spark alike.
            nan = exp.cast(exp.Literal.string("NaN"), self.double_type())
            typed = self.typed_double(exp.func("nullif", exp.cast(col, self.double_type()), nan))
        else:
            typed = exp.cast(col, exp.DataType.build("varchar"))
        return exp.alias_(typed, exp.to_identifier(name, quoted=True))

    def _visit(self, node: ast.Expr, state: _State) -> exp.Expression:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise UnsupportedError(
                f"the SQL emitter has no rule for AST node {type(node).__name__}"
            )
        return method(node, state)

    def _level(self, sql: exp.Expression, state: _State) -> int:
        # A shared column can be computed in the stage after every shared column it reads.
        level = 0
        for col in sql.find_all(exp.Column):
            ref = col.name
            if ref.startswith(REUSE_PREFIX):
                level = max(level, state.levels[ref] + 1)
        return level

    def _stages(self, state: _State) -> list[list[_Column]]:
        """Shared columns grouped into CTEs: by dependency level, each level cut into pieces of
        at most `layout.stage_width` columns (a column only reads lower levels)."""
        width = self.layout.stage_width
        out: list[list[_Column]] = []
        for level in sorted({c.level for c in state.order}):
            cols = [c for c in state.order if c.level == level]
            step = width or len(cols)
            out.extend(cols[i : i + step] for i in range(0, len(cols), step))
        return out

    def _share(self, node: ast.Expr, inner: ast.Expr, state: _State) -> exp.Expression:
        got = state.reused.get(id(node))
        if got is None:
            sql = self._visit(inner, state)
            name = f"{REUSE_PREFIX}{len(state.order)}"
            got = _Column(name, self._level(sql, state), sql)
            state.levels[name] = got.level
            state.reused[id(node)] = got
            state.order.append(got)
        return self._col(got.name)

    def visit_IdExpr(self, node: ast.IdExpr, state: _State) -> exp.Expression:
        if node.to_reuse:
            return self._share(node, node.expr, state)
        return self._visit(node.expr, state)

    def visit_ColumnRef(self, node: ast.ColumnRef, state: _State) -> exp.Expression:
        if node.sql_type is None:
            raise UnsupportedError(f"input column {node.name!r} is read without a declared type")
        prev = state.inputs.setdefault(node.name, node.sql_type)
        if prev != node.sql_type:
            raise UnsupportedError(
                f"input column {node.name!r} is read both as {prev} and as {node.sql_type}"
            )
        return self._col(node.name)

    def visit_NumVal(self, node: ast.NumVal, state: _State) -> exp.Expression:
        return self.number(float(node.value))

    def visit_NullVal(self, node: ast.NullVal, state: _State) -> exp.Expression:
        # Typed, so a CASE whose every branch is NULL still has a numeric type on every engine.
        return exp.Cast(this=exp.Null(), to=self.double_type())

    def visit_StrVal(self, node: ast.StrVal, state: _State) -> exp.Expression:
        return exp.Literal.string(node.value)

    _BIN = {
        ast.BinNumOpType.ADD: exp.Add,
        ast.BinNumOpType.SUB: exp.Sub,
        ast.BinNumOpType.MUL: exp.Mul,
        ast.BinNumOpType.DIV: exp.Div,
    }

    def visit_BinNumExpr(self, node: ast.BinNumExpr, state: _State) -> exp.Expression:
        if node.op == ast.BinNumOpType.ADD:
            return self._sum(layout.flatten_sum(node), state)
        left = self._visit(node.left, state)
        return _binary(self._BIN[node.op], left, self._visit(node.right, state))

    # -- long sums (docs/decisions/0013-large-ensemble-layout.md) ----------------------------
    def _sum(self, terms: list[ast.Expr], state: _State) -> exp.Expression:
        sqls = self._sum_terms(terms, state)
        if self.layout.sum_chunk is None:
            return self._add_all(sqls)

        def build(group: list | int) -> exp.Expression:
            if isinstance(group, int):
                return sqls[group]
            return self._add_all([build(g) for g in group])

        return build(layout.chunks(len(sqls), self.layout.sum_chunk))

    @staticmethod
    def _add_all(sqls: list[exp.Expression]) -> exp.Expression:
        out = sqls[0]
        for s in sqls[1:]:
            out = _binary(exp.Add, out, s)
        return out

    def _sum_terms(self, terms: list[ast.Expr], state: _State) -> list[exp.Expression]:
        """Each term's SQL; with `merge_lookups`, runs of one-hot terms on one input become one
        CASE each (layout.Lookup)."""
        if not self.layout.merge_lookups:
            return [self._visit(t, state) for t in terms]
        out: list[exp.Expression] = []
        run: list[layout.Lookup] = []
        for t in terms:
            found = layout.lookup_term(t)
            if found is not None and run and layout.mergeable(run, found):
                run.append(found)
                continue
            if run:
                out.append(self._lookup_case(run, state))
                run = []
            if found is None:
                out.append(self._visit(t, state))
            elif found.other == 0.0:
                run = [found]
            else:
                out.append(self._lookup_case([found], state))
        if run:
            out.append(self._lookup_case(run, state))
        return out

    def _lookup_case(self, run: list[layout.Lookup], state: _State) -> exp.Expression:
        # Weight products are computed here in float64, the same IEEE product the engine
        # would compute from the 0/1 column and the weight.
        case = exp.Case()
        for item in run:
            for test, value in item.cases:
                case = case.when(self._visit(test, state), self.number(value), copy=False)
        return case.else_(self.number(run[0].other if len(run) == 1 else 0.0), copy=False)

    _CMP = {
        ast.CompOpType.LT: exp.LT,
        ast.CompOpType.LTE: exp.LTE,
        ast.CompOpType.GT: exp.GT,
        ast.CompOpType.GTE: exp.GTE,
        ast.CompOpType.EQ: exp.EQ,
        ast.CompOpType.NOT_EQ: exp.NEQ,
    }

    def visit_CompExpr(self, node: ast.CompExpr, state: _State) -> exp.Expression:
        cls = self._CMP[node.op]
        return cls(this=self._visit(node.left, state), expression=self._visit(node.right, state))

    def visit_StrEqExpr(self, node: ast.StrEqExpr, state: _State) -> exp.Expression:
        return exp.EQ(this=self._visit(node.expr, state), expression=exp.Literal.string(node.value))

    def visit_IsNullExpr(self, node: ast.IsNullExpr, state: _State) -> exp.Expression:
        return exp.Is(this=self._visit(node.expr, state), expression=exp.Null())

    def visit_OrExpr(self, node: ast.OrExpr, state: _State) -> exp.Expression:
        return exp.Or(this=self._visit(node.left, state), expression=self._visit(node.right, state))

    def visit_AndExpr(self, node: ast.AndExpr, state: _State) -> exp.Expression:
        left, right = self._visit(node.left, state), self._visit(node.right, state)
        left = exp.Paren(this=left) if isinstance(left, exp.Or) else left
        right = exp.Paren(this=right) if isinstance(right, exp.Or) else right
        return exp.And(this=left, expression=right)

    def visit_NotExpr(self, node: ast.NotExpr, state: _State) -> exp.Expression:
        return exp.Not(this=exp.Paren(this=self._visit(node.expr, state)))

    def visit_AbsExpr(self, node: ast.AbsExpr, state: _State) -> exp.Expression:
        return exp.Abs(this=self._visit(node.expr, state))

    def visit_ExpExpr(self, node: ast.ExpExpr, state: _State) -> exp.Expression:
        return exp.Exp(this=self._visit(node.expr, state))

    def visit_Float32Expr(self, node: ast.Float32Expr, state: _State) -> exp.Expression:
        """The value rounded to float32, as a double: CAST(CAST(x AS REAL) AS DOUBLE) (FLOAT on
        Spark); the cast rounds to nearest, ties to even, on all three engines.

        `a + b` or `a - b` rounded, with a and b float32 values themselves (Float32Expr, or a
        column holding one), is computed in REAL arithmetic instead: IEEE float32 addition is
        exactly that rounding, on DuckDB, PostgreSQL and Spark alike (not division: Spark
        divides FLOATs in DOUBLE). So XGBoost's running sum (one rounded `prev + leaf` per
        boosting round) is one flat `CAST(... AS REAL) + ...` chain, cast back to DOUBLE once,
        and it is walked in a loop, not one recursion per round
        (docs/decisions/0011-xgboost-float32.md)."""
        real = exp.DataType.build("float")
        additive = (ast.BinNumOpType.ADD, ast.BinNumOpType.SUB)

        def float32_operand(x: ast.Expr) -> ast.Expr | None:
            # x, if its value is a float32 (inline IdExprs looked through), else None.
            while isinstance(x, ast.IdExpr) and not x.to_reuse:
                x = x.expr
            inner = x
            while isinstance(inner, ast.IdExpr):
                inner = inner.expr
            return x if isinstance(inner, ast.Float32Expr) else None

        def operands(n: ast.Float32Expr) -> tuple[ast.Expr, ast.Expr] | None:
            e = n.expr
            if isinstance(e, ast.BinNumExpr) and e.op in additive:
                left, right = float32_operand(e.left), float32_operand(e.right)
                if left is not None and right is not None:
                    return left, right
            return None

        def as_real(x: ast.Expr) -> exp.Expression:
            # A float32 operand as REAL: computed in REAL when inline, else its column cast
            # (exactly: the double holds a float32 value).
            if isinstance(x, ast.Float32Expr):
                return in_real(x)
            return exp.Cast(this=self._visit(x, state), to=real)

        def in_real(n: ast.Float32Expr) -> exp.Expression:
            links: list[tuple[ast.BinNumOpType, ast.Expr]] = []
            pair = operands(n)
            while pair is not None and isinstance(pair[0], ast.Float32Expr):
                links.append((n.expr.op, pair[1]))
                n = pair[0]
                pair = operands(n)
            if pair is None:
                # exp.Cast, not exp.cast(): no copy of the argument, no merging of casts.
                sql = exp.Cast(this=self._visit(n.expr, state), to=real)
            else:
                sql = _binary(self._BIN[n.expr.op], as_real(pair[0]), as_real(pair[1]))
            for op, right in reversed(links):
                sql = _binary(self._BIN[op], sql, as_real(right))
            return sql

        return exp.Cast(this=in_real(node), to=self.double_type())

    def visit_CoalesceExpr(self, node: ast.CoalesceExpr, state: _State) -> exp.Expression:
        return exp.Coalesce(
            this=self._visit(node.expr, state), expressions=[self._visit(node.default, state)]
        )

    def visit_IfExpr(self, node: ast.IfExpr, state: _State) -> exp.Expression:
        case = exp.Case()
        cur: ast.Expr = node
        # else-if chains become one flat CASE (following whichever branch ends up in ELSE).
        while isinstance(cur, ast.IfExpr):
            test, then, other = self._oriented(cur, state)
            case = case.when(test, self._visit(then, state), copy=False)
            cur = other
        return case.else_(self._visit(cur, state), copy=False)

    def _oriented(
        self, node: ast.IfExpr, state: _State
    ) -> tuple[exp.Expression, ast.Expr, ast.Expr]:
        """(test, THEN branch, ELSE branch). A split whose NULL must take the true side is
        written as the complementary comparison with the branches swapped: NULL then fails it
        and falls to ELSE (layout.null_route)."""
        route = layout.null_route(node.test) if self.layout.null_routing else None
        if route is None:
            return self._visit(node.test, state), node.body, node.orelse
        x, value = self._visit(route.x, state), self._visit(route.value, state)
        if route.null_is_true:
            return self._CMP[route.complement](this=x, expression=value), node.orelse, node.body
        return self._CMP[route.op](this=x, expression=value), node.body, node.orelse

    def visit_IndexExpr(self, node: ast.IndexExpr, state: _State) -> exp.Expression:
        # sqlglot takes the index 0-based and writes each dialect's own: `[...][i + 1]` on
        # DuckDB and PostgreSQL (1-based arrays), `ARRAY(...)[i]` on Spark.
        values = exp.Array(expressions=[self.number(v) for v in node.values])
        index = exp.Cast(this=self._visit(node.expr, state), to=exp.DataType.build("int"))
        return exp.Bracket(this=values, expressions=[index])

    def visit_MaxExpr(self, node: ast.MaxExpr, state: _State) -> exp.Expression:
        # greatest() exists on DuckDB, PostgreSQL and Spark; the values are never NULL here.
        return exp.Greatest(
            this=self._visit(node.exprs[0], state),
            expressions=[self._visit(e, state) for e in node.exprs[1:]],
        )

    def label(self, value: str | int | float) -> exp.Expression:
        if isinstance(value, str):
            return exp.Literal.string(value)
        if isinstance(value, int):
            return exp.Literal.number(str(value))
        return self.number(value)

    def visit_ArgMaxExpr(self, node: ast.ArgMaxExpr, state: _State) -> exp.Expression:
        values = [self._visit(e, state) for e in node.exprs]
        # Probabilities are NULL together (a row the model refuses): no class is predicted.
        case = exp.Case().when(
            exp.Is(this=values[0].copy(), expression=exp.Null()), exp.Null(), copy=False
        )
        # Class i wins when it is >= every later class and > every earlier one; testing in
        # order with >= against the later ones gives numpy's first-maximum rule.
        for i in range(len(values) - 1):
            conds = [
                exp.GTE(this=values[i].copy(), expression=values[j].copy())
                for j in range(i + 1, len(values))
            ]
            test = conds[0]
            for c in conds[1:]:
                test = exp.And(this=test, expression=c)
            case = case.when(test, self.label(node.labels[i]), copy=False)
        return case.else_(self.label(node.labels[-1]), copy=False)

    def visit_SigmoidExpr(self, node: ast.SigmoidExpr, state: _State) -> exp.Expression:
        inner = node.expr
        # The margin is read up to four times below, so it is always a column of its own.
        shared = (
            inner if isinstance(inner, ast.IdExpr) and inner.to_reuse else ast.IdExpr(inner, True)
        )
        z = self._visit(shared, state)
        one, zero = self.number(1.0), self.number(0.0)

        def exp_(e: exp.Expression) -> exp.Expression:
            return exp.Exp(this=e)

        # 1 / (1 + e^-z) for z >= 0 and e^z / (1 + e^z) below: neither exp() can overflow.
        pos = exp.Div(
            this=one.copy(),
            expression=exp.Paren(this=exp.Add(this=one.copy(), expression=exp_(exp.Neg(this=z)))),
        )
        neg = exp.Div(
            this=exp_(z.copy()),
            expression=exp.Paren(this=exp.Add(this=one.copy(), expression=exp_(z.copy()))),
        )
        return (
            exp.Case()
            .when(exp.GT(this=z.copy(), expression=self.number(SIGMOID_HIGH)), one.copy())
            .when(exp.GTE(this=z.copy(), expression=zero.copy()), pos)
            .when(exp.LT(this=z.copy(), expression=self.number(SIGMOID_LOW)), zero.copy())
            .else_(neg)
        )


def check_names(inputs: list[str], key: str | None) -> None:
    """Refuse input names the SQL cannot keep apart. DuckDB, Spark (and dbt's relations)
    compare identifiers case-insensitively even when quoted, so two names that differ only in
    case, or a name in the reserved prefix in any case, would silently read the wrong column."""
    seen: dict[str, str] = {}
    for name in [*inputs, *([key] if key is not None else [])]:
        if name != key and name.lower().startswith(REUSE_PREFIX):
            raise UnsupportedError(
                f"input column {name!r} uses the reserved prefix {REUSE_PREFIX!r} (in any case)"
            )
        other = seen.get(name.lower())
        if other is not None and name == key:
            raise UnsupportedError(f"key column {key!r} is also a model input ({other!r})")
        if other is not None:
            raise UnsupportedError(
                f"input columns {other!r} and {name!r} differ only in case; warehouses compare "
                "identifiers case-insensitively, rename one of them"
            )
        seen[name.lower()] = name


def _protect_multiline_identifiers(
    tree: exp.Expression,
) -> tuple[exp.Expression, dict[str, str]]:
    """sqlglot's pretty printer indents every line it prints, including the continuation lines
    of a quoted identifier that holds a newline, which renames the column. Such identifiers are
    printed as placeholder tokens and put back, quoted, after printing."""
    mapping: dict[str, str] = {}
    if not any("\n" in i.name or "\r" in i.name for i in tree.find_all(exp.Identifier)):
        return tree, mapping
    tree = tree.copy()
    tokens: dict[str, str] = {}
    for ident in tree.find_all(exp.Identifier):
        if "\n" in ident.name or "\r" in ident.name:
            token = tokens.setdefault(ident.name, f"__mlsm_multiline_{len(tokens)}__")
            mapping[f'"{token}"'] = ident.name
            mapping[f"`{token}`"] = ident.name
            ident.set("this", token)
            ident.set("quoted", True)
    return tree, mapping


def _binary(cls: type, left: exp.Expression, right: exp.Expression) -> exp.Expression:
    additive = (exp.Add, exp.Sub)
    # Parentheses only where precedence or left-associativity needs them.
    if cls in additive:
        if isinstance(right, additive):
            right = exp.Paren(this=right)
    else:
        if isinstance(left, additive):
            left = exp.Paren(this=left)
        if isinstance(right, (*additive, exp.Mul, exp.Div)):
            right = exp.Paren(this=right)
    return cls(this=left, expression=right)


def parse_check(sql: str, dialect: str) -> None:
    """Fail early if the rendered text does not parse back as exactly one statement."""
    statements = sqlglot.parse(sql, read=dialect)
    if len([s for s in statements if s is not None]) != 1:
        raise UnsupportedError("the compiled SQL did not render as a single statement")


class DuckDBEmitter(SqlEmitter):
    dialect = "duckdb"


class SparkEmitter(SqlEmitter):
    dialect = "spark"


class PostgresEmitter(SqlEmitter):
    dialect = "postgres"

    def literal(self, lit: exp.Expression) -> exp.Expression:
        # PostgreSQL reads 1.5E0 as NUMERIC: CASEs of leaves and literal-only arithmetic would
        # be exact decimal, not float64. The cast goes through the shortest round-trip text,
        # so it gives the same double (docs/decisions/0012-engines.md).
        return exp.cast(lit, self.double_type())

    def typed_double(self, typed: exp.Expression) -> exp.Expression:
        # PostgreSQL raises "value out of range: underflow" when a product of non-zero doubles
        # rounds to zero, e.g. coef 5e-5 * 1e-320, where numpy gives 0. Subnormal inputs are read
        # as 0: the libraries that cast to float32 (scikit-learn trees, XGBoost) and LightGBM's
        # zero band read them as 0 already, and for a linear term the change is below 1e-300.
        return (
            exp.Case()
            .when(
                exp.LT(this=exp.Abs(this=typed.copy()), expression=self.number(SMALLEST_NORMAL)),
                self.number(0.0),
            )
            .else_(typed)
        )

    def finish(self, tree: exp.Select) -> exp.Select:
        # PostgreSQL inlines a CTE read once, substituting each column by its expression
        # wherever it is read: a shared column read k times in each of n chained stages
        # becomes k**n copies (an XGBoost float32-rounding chain planned into 23 GB and was
        # OOM-killed). MATERIALIZED computes every stage once, as the layout intends.
        for cte in tree.find_all(exp.CTE):
            cte.set("materialized", True)
        return tree

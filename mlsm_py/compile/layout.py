"""How the emitter lays out large expressions: pure AST analysis, no SQL text.

Three rules, chosen by measurement (bench/layout_experiment.py,
docs/decisions/0013-large-ensemble-layout.md):

- Long sums are rendered as a sum of chunks (`flatten_sum`, `chunks`): a 1,000-tree ensemble
  written as one left-deep `t0 + t1 + ... + t999` nests 1,000 deep, past DuckDB's
  `max_expression_depth` (1000) and Python's recursion limit. Chunks of at most `SUM_CHUNK`
  terms nest about 2 * SUM_CHUNK deep at most. Sums of up to SUM_CHUNK terms are unchanged.
- A split whose missing value goes to the "true" side is written with the complementary test
  and the branches swapped (`null_route`): `x IS NULL OR x <= t` becomes `x > t` with the
  branches exchanged, and LightGBM's `coalesce(x, 0) <= t` becomes one plain comparison. NULL
  makes a comparison not-true, so it lands in ELSE, the side it must go to; every non-NULL value
  (NaN, +-inf included: engines order NaN above every number) satisfies exactly one of the two
  comparisons. One comparison per split instead of two or three.
- A run of one-hot (lookup) terms of one linear sum over the same input (`lookup_term`,
  `mergeable`) becomes one CASE that yields the weight of the level present: the other terms
  are exact zeros, so the running sum is bit-identical, and one CASE replaces a CASE, a multiply
  and an add per level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlsm_py.compile import ast

# At most this many terms in one left-deep run of additions (see the module docstring).
SUM_CHUNK = 32


@dataclass(frozen=True)
class Layout:
    """The emitter's layout switches. The defaults are the measured choice; the others exist so
    bench/layout_experiment.py can measure what they replaced.

    sum_chunk      terms per left-deep run of a long sum (None: one left-deep chain)
    null_routing   one comparison per split with NULL sent to ELSE (False: `x IS NULL OR ...`)
    merge_lookups  one-hot terms of a linear sum as one CASE per input (False: column * weight)
    stage_width    at most this many shared columns per CTE (None: one CTE per dependency level)
    """

    sum_chunk: int | None = SUM_CHUNK
    null_routing: bool = True
    merge_lookups: bool = True
    stage_width: int | None = None


DEFAULT_LAYOUT = Layout()


def flatten_sum(node: ast.Expr) -> list[ast.Expr]:
    """The terms of a left-deep chain of additions, left to right (`ast.add_all`'s shape).

    Iterative: a 1,000-term chain must not recurse 1,000 deep in Python."""
    terms: list[ast.Expr] = []
    while isinstance(node, ast.BinNumExpr) and node.op == ast.BinNumOpType.ADD:
        terms.append(node.right)
        node = node.left
    terms.append(node)
    terms.reverse()
    return terms


def chunks(n: int, size: int = SUM_CHUNK) -> list[list[int]]:
    """Index groups for a sum of n terms: one group when n <= size, else consecutive groups of
    `size`, grouped again while there are more than `size` groups. Leaves are term indices."""
    groups: list = list(range(n))
    while len(groups) > size:
        groups = [groups[i : i + size] for i in range(0, len(groups), size)]
    return groups


# -- missing values: one comparison per split -------------------------------------------------

_COMPLEMENT = {
    ast.CompOpType.LTE: ast.CompOpType.GT,
    ast.CompOpType.LT: ast.CompOpType.GTE,
    ast.CompOpType.GT: ast.CompOpType.LTE,
    ast.CompOpType.GTE: ast.CompOpType.LT,
}

_HOLDS = {
    ast.CompOpType.LTE: lambda a, b: a <= b,
    ast.CompOpType.LT: lambda a, b: a < b,
    ast.CompOpType.GT: lambda a, b: a > b,
    ast.CompOpType.GTE: lambda a, b: a >= b,
}


@dataclass(frozen=True)
class NullRoute:
    """A split test equivalent to `x op value` for non-NULL x, and `null_is_true` for NULL."""

    x: ast.Expr
    op: ast.CompOpType
    value: ast.NumVal
    null_is_true: bool

    @property
    def complement(self) -> ast.CompOpType:
        return _COMPLEMENT[self.op]


def null_route(test: ast.Expr) -> NullRoute | None:
    """Recognise the two NULL-routing shapes the tree assemblers build; None for any other."""
    if isinstance(test, ast.OrExpr) and isinstance(test.left, ast.IsNullExpr):
        cmp = test.right
        if (
            isinstance(cmp, ast.CompExpr)
            and cmp.op in _COMPLEMENT
            and isinstance(cmp.right, ast.NumVal)
            and _same(cmp.left, test.left.expr)
        ):
            return NullRoute(cmp.left, cmp.op, cmp.right, True)
        return None
    if (
        isinstance(test, ast.CompExpr)
        and test.op in _COMPLEMENT
        and isinstance(test.left, ast.CoalesceExpr)
        and isinstance(test.left.default, ast.NumVal)
        and isinstance(test.right, ast.NumVal)
    ):
        # coalesce(x, d) op t is x op t for non-NULL x and the constant (d op t) for NULL.
        d, t = float(test.left.default.value), float(test.right.value)
        if math.isnan(d) or math.isnan(t):
            return None
        return NullRoute(test.left.expr, test.op, test.right, _HOLDS[test.op](d, t))
    return None


def _same(a: ast.Expr, b: ast.Expr) -> bool:
    # The assemblers pass the same node object; equal structure is accepted too.
    return a is b or a == b


# -- one-hot lookups in linear sums -----------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """A term `weight * CASE WHEN test_1 THEN v_1 ... ELSE other END` whose tests are
    equalities / NULL tests on one source. `cases` holds (test, v_i * weight); `atoms` the
    literals (and None for IS NULL) that select a non-ELSE branch."""

    source: ast.Expr
    cases: tuple[tuple[ast.Expr, float], ...]
    other: float
    atoms: frozenset


def lookup_term(term: ast.Expr) -> Lookup | None:
    if not (isinstance(term, ast.BinNumExpr) and term.op == ast.BinNumOpType.MUL):
        return None
    if isinstance(term.right, ast.NumVal):
        case, weight = term.left, float(term.right.value)
    elif isinstance(term.left, ast.NumVal):
        case, weight = term.right, float(term.left.value)
    else:
        return None
    if isinstance(case, ast.IdExpr):
        case = case.expr
    if not isinstance(case, ast.IfExpr) or not math.isfinite(weight):
        return None
    source: ast.Expr | None = None
    cases: list[tuple[ast.Expr, float]] = []
    atoms: set = set()
    node: ast.Expr = case
    while isinstance(node, ast.IfExpr):
        if not isinstance(node.body, ast.NumVal):
            return None
        found = _atoms(node.test)
        if found is None:
            return None
        src, these = found
        if source is None:
            source = src
        elif not _same(src, source):
            return None
        atoms |= these
        cases.append((node.test, float(node.body.value) * weight))
        node = node.orelse
    if not isinstance(node, ast.NumVal) or source is None:
        return None
    return Lookup(source, tuple(cases), float(node.value) * weight, frozenset(atoms))


def _atoms(test: ast.Expr) -> tuple[ast.Expr, set] | None:
    """(source, literals) when `test` is an OR of `source = literal` / `source IS NULL`."""
    if isinstance(test, ast.StrEqExpr):
        return test.expr, {("s", test.value)}
    if isinstance(test, ast.IsNullExpr):
        return test.expr, {None}
    if (
        isinstance(test, ast.CompExpr)
        and test.op == ast.CompOpType.EQ
        and isinstance(test.right, ast.NumVal)
        and math.isfinite(float(test.right.value))
    ):
        # -0.0 == 0.0: the atom is the value, so the two can never count as disjoint.
        return test.left, {("n", float(test.right.value) + 0.0)}
    if isinstance(test, ast.OrExpr):
        left, right = _atoms(test.left), _atoms(test.right)
        if left is None or right is None or not _same(left[0], right[0]):
            return None
        return left[0], left[1] | right[1]
    return None


def mergeable(run: list[Lookup], nxt: Lookup) -> bool:
    """`nxt` may join the run: same source, no level in common (so at most one term of the run
    is not its ELSE value), and every ELSE value an exact zero (adding it changes nothing)."""
    if nxt.other != 0.0 or not _same(nxt.source, run[0].source):
        return False
    return all(not (prev.atoms & nxt.atoms) for prev in run)

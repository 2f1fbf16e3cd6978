"""Reason codes: each input column's contribution to one row's score, as AST.

The contributions are expressions over the same input columns the score reads, so the SQL
emitter writes them into the scoring SELECT and the in-process interpreter evaluates the same
nodes. For every row, `expected + sum(terms) == margin` (decision 0021):

- linear models: coef_j * (x_j - mean_j) over the transformed columns, exact; the means are the
  training means of the transformed columns, an explicit input so a stored fit can be compiled
  again without its training data (`linear_means`);
- tree ensembles: Saabas path contributions, one constant per leaf (reasons_trees).

A transformed column is attributed to the one input column its expression reads: every level
of a one-hot category is one reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.pipeline import Pipeline

from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import ESTIMATORS, Assembled, linear, transform
from mlsm_py.compile.reasons_trees import FAMILIES, Ensemble
from mlsm_py.errors import UnsupportedError

METHODS = ("saabas", "linear")
_LINEAR_FNS = (
    linear.logistic_regression,
    linear.sgd_classifier,
    linear.decision_only,
    linear.linear_regressor,
)


@dataclass(frozen=True)
class Contributions:
    """`terms[i]` is the contribution of input column `inputs[i]` on the margin scale;
    expected + sum(terms) == margin on every row (to float rounding).

    margin: a linear classifier's decision function (the logit for a logistic model); a tree
    classifier's positive-class probability (scikit-learn trees and forests) or raw score
    (boosting: the logit for a sigmoid link); a regressor's raw prediction (before any exp
    link). `tolerance`: the identity's tolerance when coarser than float64 (XGBoost's float32
    margin), else None."""

    inputs: tuple[str, ...]
    terms: tuple[ast.Expr, ...]
    expected: float
    margin: ast.Expr
    method: str
    tolerance: float | None = None


def _prepare(estimator: Any) -> tuple[tuple[str, ...], list[ast.Expr], Any]:
    """(input names, the final estimator's input expressions, the final estimator): the columns
    exactly as `assemble` builds them."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        raise UnsupportedError(
            f"reason codes: {type(estimator).__name__} was fitted without column names; fit it "
            "on a pandas DataFrame (feature_names_in_)"
        )
    inputs = tuple(str(n) for n in names)
    cols: list[tuple[str, ast.Expr]] = [(n, ast.ColumnRef(n)) for n in inputs]
    if not isinstance(estimator, Pipeline):
        return inputs, [e for _, e in cols], estimator
    steps = [s for _, s in estimator.steps if s not in (None, "passthrough")]
    for step in steps[:-1]:
        cols = transform(step, cols, "pipeline step")
    exprs = [e if isinstance(e, ast.ColumnRef) else ast.IdExpr(e, True) for _, e in cols]
    return inputs, exprs, steps[-1]


def source_of(expr: ast.Expr) -> str | None:
    """The one input column an expression reads, or None when it reads none or several."""
    names: set[str] = set()
    stack, seen = [expr], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ast.ColumnRef):
            names.add(node.name)
        stack.extend(ast.children(node))
    return names.pop() if len(names) == 1 else None


def is_linear(final: Any) -> bool:
    return ESTIMATORS.get(type(final)) in _LINEAR_FNS


def contributions(
    estimator: Any,
    background: pd.DataFrame | None = None,
    method: str = "saabas",
    *,
    means: Sequence[float] | None = None,
) -> Contributions:
    """Per-input contributions of a fitted estimator (a Pipeline or a bare model).

    Linear models need the training means of their transformed inputs: `means` (stored with
    the fit, see `linear_means`) or `background` (the training frame) to compute them from.
    `method` chooses the tree method ("saabas"); linear models are always "linear" (exact).
    Anything unsupported raises UnsupportedError naming it."""
    if method not in METHODS:
        raise UnsupportedError(
            f"reason codes: method {method!r} is not supported; supported: {', '.join(METHODS)} "
            "(exact TreeSHAP: see docs/decisions/0021-reason-codes.md)"
        )
    inputs, xs, final = _prepare(estimator)
    sources = [source_of(x) for x in xs]
    if is_linear(final):
        if means is None:
            if background is None:
                raise UnsupportedError(
                    f"reason codes for {type(final).__name__} need the training means of its "
                    "inputs: pass `means` (linear_means) or the training frame as `background`"
                )
            means = linear_means(estimator, background)
        return _linear(final, inputs, xs, sources, means)
    family = FAMILIES.get(type(final))
    if family is None:
        supported = sorted(
            {t.__name__ for t, f in ESTIMATORS.items() if f in _LINEAR_FNS}
            | {t.__name__ for t in FAMILIES}
        )
        raise UnsupportedError(
            f"reason codes: {type(final).__name__} is not supported; supported: "
            f"{', '.join(supported)}"
        )
    ens = family(final, xs)
    terms, expected = saabas_terms(ens, sources, inputs)
    shared = tuple(ast.IdExpr(t, to_reuse=True) for t in terms)
    return Contributions(inputs, shared, expected, ens.margin, "saabas", ens.tolerance)


# -- linear ---------------------------------------------------------------------------------------


def linear_means(estimator: Any, background: pd.DataFrame) -> list[float]:
    """The mean of each column the linear model reads, over `background` (the training frame),
    transformed by the pipeline's own preprocessing: the values to store with the fit."""
    if isinstance(estimator, Pipeline):
        steps = [s for _, s in estimator.steps if s not in (None, "passthrough")]
        if len(steps) > 1:
            data: Any = estimator[:-1].transform(background)
        else:
            data = background[list(estimator.feature_names_in_)]
    else:
        data = background[list(estimator.feature_names_in_)]
    if sparse.issparse(data):
        out = np.asarray(data.mean(axis=0), dtype="float64").ravel()
    else:
        out = np.asarray(data, dtype="float64").mean(axis=0)
    if not np.all(np.isfinite(out)):
        raise UnsupportedError(
            "reason codes: the background frame gives a missing or infinite mean for a linear "
            "model's input (impute missing values in the pipeline)"
        )
    return [float(v) for v in out]


def _linear(
    final: Any,
    inputs: tuple[str, ...],
    xs: list[ast.Expr],
    sources: list[str | None],
    means: Sequence[float],
) -> Contributions:
    name = type(final).__name__
    coef = np.atleast_2d(np.asarray(final.coef_, dtype="float64"))
    intercept = np.ravel(np.asarray(final.intercept_, dtype="float64"))
    if coef.shape[0] != 1 or intercept.size != 1:
        raise UnsupportedError(
            f"reason codes: {name} with {coef.shape[0]} weight rows is not supported; supported: "
            "binary classifiers and single-output regressors"
        )
    if ESTIMATORS[type(final)] is linear.logistic_regression and linear._uses_softmax(final):
        raise UnsupportedError(
            f"reason codes: binary multinomial {name} is not supported (its logit is twice the "
            "decision function); fit it one-vs-rest"
        )
    if len(means) != len(xs):
        raise UnsupportedError(f"reason codes: {len(means)} means for {len(xs)} model inputs")
    typed = [ast.as_double(x) for x in xs]
    if hasattr(final, "classes_"):
        margin = linear.decision_function(final, typed)
    else:
        margin = linear.linear_regressor(final, typed)
    assert not isinstance(margin, list)
    per_input: dict[str, list[ast.Expr]] = {n: [] for n in inputs}
    for x, src, w, m in zip(typed, sources, coef[0], means, strict=True):
        if w == 0.0:
            continue
        if src is None:
            raise UnsupportedError(
                f"reason codes: a column {name} reads does not derive from exactly one input"
            )
        centred = ast.BinNumExpr(x, ast.num(m), ast.BinNumOpType.SUB)
        per_input[src].append(ast.BinNumExpr(centred, ast.num(w), ast.BinNumOpType.MUL))
    terms = tuple(
        ast.IdExpr(ast.add_all(per_input[n]) if per_input[n] else ast.num(0.0), to_reuse=True)
        for n in inputs
    )
    expected = float(intercept[0]) + float(np.dot(coef[0], np.asarray(means, dtype="float64")))
    return Contributions(inputs, terms, expected, margin, "linear")


# -- trees ----------------------------------------------------------------------------------------

# How a leaf id becomes one input's contribution: "index", a constant array indexed by the
# leaf id (ast.IndexExpr: one lookup); "search", a balanced binary search over the tree's leaf
# ids (runs of adjacent leaves with one value merged); or "chain", one CASE arm per leaf with
# a non-zero value (ELSE 0). Per row a chain tests about half its arms and a search log2(runs)
# ids; measured in decision 0021, where bench/reasons_cost.py --lookup switches it.
LOOKUP = "index"


def saabas_terms(
    ens: Ensemble, sources: list[str | None], inputs: tuple[str, ...]
) -> tuple[list[ast.Expr], float]:
    """One contribution per input (a sum over trees of leaf-id lookups) and the expected value.

    A tree's features that derive from one input (the levels of a one-hot category) share one
    lookup: their per-leaf contributions are added first."""
    per_input: dict[str, list[ast.Expr]] = {n: [] for n in inputs}
    for tree in ens.trees:
        if tree.leaf is None:
            continue
        by_input: dict[str, dict[int, float]] = {}
        for leaf_id, contrib in sorted(tree.paths.items()):
            for f, c in contrib.items():
                src = sources[f]
                if src is None:
                    raise UnsupportedError(
                        f"reason codes: model feature {f} does not derive from exactly one input "
                        "column; contributions cannot be attributed"
                    )
                row = by_input.setdefault(src, {})
                row[leaf_id] = row.get(leaf_id, 0.0) + c
        for src in inputs:
            table = {k: v for k, v in by_input.get(src, {}).items() if v != 0.0}
            if table:
                per_input[src].append(_lookup(tree.leaf, table, sorted(tree.paths)))
    terms: list[ast.Expr] = []
    for name in inputs:
        parts = per_input[name]
        term: ast.Expr = ast.add_all(parts) if parts else ast.num(0.0)
        if parts and ens.divisor != 1.0:
            term = ast.BinNumExpr(term, ast.num(ens.divisor), ast.BinNumOpType.DIV)
        if parts and ens.null_guard is not None:
            term = ens.null_guard(term)
        terms.append(term)
    roots = np.array([t.root for t in ens.trees], dtype="float64")
    return terms, ens.offset + float(np.sum(roots)) / ens.divisor


def _lookup(leaf: ast.Expr, table: dict[int, float], leaf_ids: list[int]) -> ast.Expr:
    """The value `table` gives the row's leaf id, 0 for a leaf it does not list."""
    # Dense ids only (a tree's node numbers are about twice its leaves): an array as long as
    # the largest id.
    if LOOKUP == "index" and max(leaf_ids) < 4 * len(leaf_ids):
        return ast.IndexExpr(leaf, [table.get(i, 0.0) for i in range(max(leaf_ids) + 1)])
    if LOOKUP == "chain":
        out: ast.Expr = ast.num(0.0)
        for leaf_id, value in sorted(table.items(), reverse=True):
            test = ast.CompExpr(leaf, ast.num(float(leaf_id)), ast.CompOpType.EQ)
            out = ast.IfExpr(test, ast.num(value), out)
        return out
    runs: list[tuple[int, float]] = []  # (first leaf id of the run, its value)
    for i in leaf_ids:
        v = table.get(i, 0.0)
        if not runs or runs[-1][1] != v:
            runs.append((i, v))

    def search(lo: int, hi: int) -> ast.Expr:
        if hi - lo == 1:
            return ast.num(runs[lo][1])
        mid = (lo + hi) // 2
        # Leaf ids are integers and never NULL: `<` splits them exactly.
        test = ast.CompExpr(leaf, ast.num(float(runs[mid][0])), ast.CompOpType.LT)
        return ast.IfExpr(test, search(lo, mid), search(mid, hi))

    return search(0, len(runs))


# -- ranking --------------------------------------------------------------------------------------


def _shared(e: ast.Expr) -> ast.Expr:
    return e if isinstance(e, ast.IdExpr) and e.to_reuse else ast.IdExpr(e, to_reuse=True)


def ranks(c: Contributions) -> list[ast.Expr]:
    """rank_j = the number of inputs ahead of j: larger |contribution|, or equal and earlier in
    input order. Over non-NULL contributions the ranks are a permutation of 0..n-1."""
    mags = [ast.IdExpr(ast.AbsExpr(_shared(t)), to_reuse=True) for t in c.terms]
    out: list[ast.Expr] = []
    for j, mj in enumerate(mags):
        ahead: list[ast.Expr] = []
        for i, mi in enumerate(mags):
            if i == j:
                continue
            op = ast.CompOpType.GTE if i < j else ast.CompOpType.GT
            ahead.append(ast.IfExpr(ast.CompExpr(mi, mj, op), ast.num(1.0), ast.num(0.0)))
        out.append(ast.IdExpr(ast.add_all(ahead) if ahead else ast.num(0.0), to_reuse=True))
    return out


def top_reasons(c: Contributions, k: int) -> list[tuple[str, ast.Expr]]:
    """Output columns reason_1, reason_1_contribution, ..., reason_k, reason_k_contribution:
    the input names with the k largest |contribution| (ties to the earlier input) and their
    signed contributions."""
    n = len(c.inputs)
    if not 1 <= k <= n:
        raise UnsupportedError(f"reason codes: k={k}; the model has {n} inputs (1 <= k <= {n})")
    terms = [_shared(t) for t in c.terms]
    rank = ranks(Contributions(c.inputs, tuple(terms), c.expected, c.margin, c.method))
    out: list[tuple[str, ast.Expr]] = []
    for r in range(k):
        name: ast.Expr = ast.StrVal(c.inputs[-1])
        value: ast.Expr = terms[-1]
        # The last input is the ELSE: with a permutation of ranks it is the only one left.
        for j in range(n - 2, -1, -1):
            test = ast.CompExpr(rank[j], ast.num(float(r)), ast.CompOpType.EQ)
            name = ast.IfExpr(test, ast.StrVal(c.inputs[j]), name)
            value = ast.IfExpr(test, terms[j], value)
        out += [(f"reason_{r + 1}", name), (f"reason_{r + 1}_contribution", value)]
    return out


def contribution_columns(c: Contributions) -> list[tuple[str, ast.Expr]]:
    """`contribution_<input>` per input, then `expected` and `margin`."""
    cols = [(f"contribution_{n}", t) for n, t in zip(c.inputs, c.terms, strict=True)]
    return [*cols, ("expected", ast.num(c.expected)), ("margin", c.margin)]


@dataclass(frozen=True)
class Columns(Assembled):
    """Named output columns in the shape the SQL emitter selects (`outputs()`), so reason
    columns render as one SELECT beside or instead of a score."""

    columns: tuple[tuple[str, ast.Expr], ...] = ()

    def outputs(self) -> list[tuple[str, ast.Expr]]:
        return list(self.columns)


def as_assembled(inputs: Sequence[str], columns: Sequence[tuple[str, ast.Expr]]) -> Columns:
    names = [n for n, _ in columns]
    if len({n.lower() for n in names}) != len(names):
        raise UnsupportedError(f"reason codes: output column names collide: {names}")
    return Columns(tuple(inputs), None, "columns", columns=tuple(columns))

"""Which SQL layout scores a large tree ensemble fastest in DuckDB? Measured, not guessed.

For a few model sizes (a 100-tree depth-8 random forest, a 200-tree LightGBM, a 1,000-tree
depth-6 LightGBM, all fitted on the demo leads) every layout below is compiled, planned
(`EXPLAIN`) and executed (`CREATE OR REPLACE TABLE ... AS`) over all N rows of the benchmark's
`lead_features`, and its scores are compared with the library's own predict_proba on the same
rows (max |diff| must stay <= 1e-9).

Layouts (one statement each unless marked):
  nested           one expression: every tree inlined into one left-deep sum (what m2cgen-style
                   code generation gives); needs `SET max_expression_depth` past 1,000 trees
  one_cte          one column per tree in one CTE, one left-deep sum of the columns (the layout
                   before docs/decisions/0013)
  chunked_sum      as one_cte, the sum in runs of 32 terms (nests ~64 deep for 1,000 trees)
  running_sum      as one_cte, the sum as running partial sums, each a column of a further CTE
                   (the library's exact left-to-right order, depth <= 33)
  staged_100       as chunked_sum, the tree columns spread over CTEs of 100 columns each
  null_route       chunked_sum + one comparison per split, NULL routed by branch order, one-hot
                   runs of linear sums merged (the emitter's default layout)
  null_route_staged_100   null_route with CTEs of 100 columns
  arith            null_route, but each tree as arithmetic over its 0/1 split tests:
                   v(node) = t * v(left) + (1 - t) * v(right) (no CASE; every node evaluated)
  leaf_index       each tree's leaf number by the same integer arithmetic, the leaf value
                   fetched from a constant list: `[v0, v1, ...][i + 1]` in DuckDB; sqlglot
                   writes (ARRAY[...])[i + 1] for PostgreSQL and ARRAY(...)[i] for Spark
  temp_tables      (several statements) one TEMP TABLE per 50 trees holding the key and their
                   partial sum, joined on the key, then the link function
Settings, each on top of null_route:
  no_cse           SET disabled_optimizers = 'common_subexpressions'
  no_order         SET preserve_insertion_order = false
  threads_1        SET threads = 1

Timings: best of --reps runs, variants interleaved so machine load hits all alike; wall time
and process CPU time (user + system of this process, all DuckDB threads) are both recorded:
on a shared machine CPU time is the steadier measure.

    python bench/layout_experiment.py --rows 1000000 [--reps 2] [--models forest100,lgbm200]
        [--variants null_route,one_cte] [--warehouse PATH] [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import lightgbm
import numpy as np
import pyarrow as pa
import score_throughput as st
import sklearn
import sqlglot
from sklearn.base import clone
from sqlglot import exp

from mlsm_py.compile import ast, layout
from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.layout import Layout
from mlsm_py.estimator import input_types, score_vector
from mlsm_py.frames import model_frame
from mlsm_py.spec import Model
from mlsm_py.train.trainer import train
from models_py.leads import forest

FEATURES = st.FEATURES
KEY = "lead_id"
OUT = "__layout_out"
TOLERANCE = 1e-9
STAGE_WIDTH = 100  # tree columns per CTE in the *_staged_100 layouts
PART_TREES = 50  # trees per temp table in temp_tables


# -- models -----------------------------------------------------------------------------------
def _variant(m: Model, name: str, **params: Any) -> Model:
    est = clone(m.estimator)
    est.set_params(**params)
    return dataclasses.replace(m, name=name, estimator=est)


# The LightGBM models are the benchmark's (score_throughput.EXTRA_MODELS).
MODELS = {
    "forest100": _variant(forest, "forest100", model__n_estimators=100, model__max_depth=8),
    **{m.name: m for m in st.EXTRA_MODELS},
}


# -- emitters for the layouts the library does not use ----------------------------------------
def _is_tree(node: ast.Expr) -> bool:
    return isinstance(node, ast.IdExpr) and node.to_reuse and isinstance(node.expr, ast.IfExpr)


# `state` below is the emitter's own per-statement state, handed back to it untouched.
class _Rendered(ast.Expr):
    """SQL already rendered, as an AST node: lets RunningSumEmitter make a shared column of a
    partial sum through the emitter's own `_share`."""

    output_size = 1

    def __init__(self, sql: exp.Expression):
        self.sql = sql


class RunningSumEmitter(SqlEmitter):
    """s_1 = t_1 + ... + t_32, s_2 = s_1 + t_33 + ..., each s_j a column of its own CTE."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Shared columns are keyed by id(node): the nodes must outlive the render.
        self._partials: list[_Rendered] = []

    def _sum(self, terms: list[ast.Expr], state: Any) -> exp.Expression:
        sqls = self._sum_terms(terms, state)
        size = layout.SUM_CHUNK
        if len(sqls) <= size:
            return self._add_all(sqls)
        acc: exp.Expression | None = None
        for i in range(0, len(sqls), size):
            part = ([acc] if acc is not None else []) + sqls[i : i + size]
            node = _Rendered(self._add_all(part))
            self._partials.append(node)
            acc = self._share(node, node, state)
        assert acc is not None
        return acc

    def visit__Rendered(self, node: _Rendered, state: Any) -> exp.Expression:
        return node.sql


class ArithEmitter(SqlEmitter):
    """A tree as t * v(left) + (1 - t) * v(right), t = coalesce(CAST(test AS INTEGER), 0).
    Exact: t is 0 or 1, so each product is exactly a leaf value or zero."""

    def visit_IdExpr(self, node: ast.IdExpr, state: Any) -> exp.Expression:
        if _is_tree(node):
            return self._share(node, _ArithTree(node.expr), state)
        return super().visit_IdExpr(node, state)

    def _bit(self, node: ast.IfExpr, state: Any) -> tuple[exp.Expression, ast.Expr, ast.Expr]:
        test, then, other = self._oriented(node, state)
        as_int = exp.cast(test, exp.DataType.build("int"))
        return exp.func("coalesce", as_int, exp.Literal.number(0)), then, other

    def visit__ArithTree(self, node: _ArithTree, state: Any) -> exp.Expression:
        return self._arith(node.tree, state)

    def _arith(self, node: ast.Expr, state: Any) -> exp.Expression:
        if not isinstance(node, ast.IfExpr):
            return self._visit(node, state)
        t, then, other = self._bit(node, state)
        one = exp.Literal.number(1)
        left = exp.Mul(this=t, expression=exp.Paren(this=self._arith(then, state)))
        not_t = exp.Paren(this=exp.Sub(this=one, expression=t.copy()))
        right = exp.Mul(this=not_t, expression=exp.Paren(this=self._arith(other, state)))
        return exp.Add(this=left, expression=right)


class LeafIndexEmitter(ArithEmitter):
    """The leaf number by integer arithmetic, the value from a constant list (1-based)."""

    def visit__ArithTree(self, node: _ArithTree, state: Any) -> exp.Expression:
        leaves: list[float] = []
        index = self._index(node.tree, state, leaves)
        values = exp.Array(expressions=[self.number(v) for v in leaves])
        return exp.Bracket(this=values, expressions=[index])

    def _index(self, node: ast.Expr, state: Any, leaves: list[float]) -> exp.Expression:
        if not isinstance(node, ast.IfExpr):
            assert isinstance(node, ast.NumVal), "tree leaves are constants"
            # 0-based: sqlglot writes the index for each dialect (+1 for DuckDB/PostgreSQL).
            leaves.append(float(node.value))
            return exp.Literal.number(len(leaves) - 1)
        t, then, other = self._bit(node, state)
        one = exp.Literal.number(1)
        left = exp.Mul(this=t, expression=exp.Paren(this=self._index(then, state, leaves)))
        not_t = exp.Paren(this=exp.Sub(this=one, expression=t.copy()))
        right = exp.Mul(this=not_t, expression=exp.Paren(this=self._index(other, state, leaves)))
        return exp.Add(this=left, expression=right)


class _ArithTree(ast.Expr):
    """Marks a tree for ArithEmitter (a node type of its own, so the visitor dispatches)."""

    output_size = 1

    def __init__(self, tree: ast.Expr):
        self.tree = tree


# -- statements per layout --------------------------------------------------------------------
OLD = Layout(sum_chunk=None, null_routing=False, merge_lookups=False)
CHUNKED = Layout(null_routing=False, merge_lookups=False)


@dataclass
class Variant:
    name: str
    emitter: Callable[[], SqlEmitter] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    multi: bool = False  # temp tables: several statements


VARIANTS = [
    Variant("nested", lambda: st.NaiveEmitter("duckdb", OLD), {"max_expression_depth": 10**6}),
    Variant("one_cte", lambda: SqlEmitter("duckdb", OLD)),
    Variant("chunked_sum", lambda: SqlEmitter("duckdb", CHUNKED)),
    Variant("running_sum", lambda: RunningSumEmitter("duckdb", CHUNKED)),
    Variant(
        "staged_100",
        lambda: SqlEmitter("duckdb", dataclasses.replace(CHUNKED, stage_width=STAGE_WIDTH)),
    ),
    Variant("null_route", lambda: SqlEmitter("duckdb")),
    Variant("null_route_staged_100", lambda: SqlEmitter("duckdb", Layout(stage_width=STAGE_WIDTH))),
    Variant("arith", lambda: ArithEmitter("duckdb")),
    Variant("leaf_index", lambda: LeafIndexEmitter("duckdb")),
    Variant("temp_tables", lambda: SqlEmitter("duckdb"), multi=True),
    Variant(
        "no_cse", lambda: SqlEmitter("duckdb"), {"disabled_optimizers": "common_subexpressions"}
    ),
    Variant("no_order", lambda: SqlEmitter("duckdb"), {"preserve_insertion_order": False}),
    Variant("threads_1", lambda: SqlEmitter("duckdb"), {"threads": 1}),
]


def render(e: exp.Expression) -> str:
    return e.sql(dialect="duckdb")


def ctas(target: str, select_sql: str, temp: bool = False) -> str:
    # The compiled SELECT is used as rendered (see score_throughput.ctas_over_text).
    kind = "CREATE OR REPLACE TEMP TABLE " if temp else "CREATE OR REPLACE TABLE "
    return kind + render(exp.to_table(target)) + " AS\n" + select_sql


def _biggest_sum(assembled: Assembled) -> ast.BinNumExpr:
    """The ensemble's sum of trees: the addition chain with the most terms."""
    best: tuple[int, Any] = (0, None)
    stack = [e for _, e in assembled.outputs()]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ast.BinNumExpr) and node.op == ast.BinNumOpType.ADD:
            n = len(layout.flatten_sum(node))
            if n > best[0]:
                best = (n, node)
        stack.extend(ast.children(node))
    assert best[1] is not None
    return best[1]


def _replace(node: ast.Expr, old: ast.Expr, new: ast.Expr) -> ast.Expr:
    """A copy of the output AST above the sum, with the sum replaced (the part is shallow)."""
    if node is old:
        return new
    if isinstance(node, ast.SigmoidExpr):
        return ast.SigmoidExpr(_replace(node.expr, old, new))
    if isinstance(node, ast.IdExpr):
        return ast.IdExpr(_replace(node.expr, old, new), node.to_reuse)
    if isinstance(node, ast.BinNumExpr):
        return ast.BinNumExpr(
            _replace(node.left, old, new), _replace(node.right, old, new), node.op
        )
    return node


def temp_table_statements(assembled: Assembled) -> list[str]:
    """One TEMP TABLE per PART_TREES trees (key, partial sum), then the link over their join."""
    total = _biggest_sum(assembled)
    terms = layout.flatten_sum(total)
    stmts, parts = [], []
    for i in range(0, len(terms), PART_TREES):
        part = Assembled(assembled.inputs, ast.add_all(terms[i : i + PART_TREES]), "regressor")
        name = f"__part_{i // PART_TREES}"
        stmts.append(ctas(name, SqlEmitter("duckdb").render(part, FEATURES, KEY), temp=True))
        parts.append(name)
    cols = [exp.column("score", table=p) for p in parts]
    summed = cols[0]
    for c in cols[1:]:
        summed = exp.Add(this=summed, expression=c)
    joined = exp.select(exp.column(KEY, table=parts[0]), exp.alias_(summed, "s")).from_(parts[0])
    for p in parts[1:]:
        joined = joined.join(exp.to_table(p), using=[KEY])
    stmts.append(ctas("__parts", render(joined), temp=True))
    link = _replace(assembled.score, total, ast.ColumnRef("s", "double"))
    final = Assembled(("s",), link, assembled.task)
    stmts.append(ctas(OUT, SqlEmitter("duckdb").render(final, "__parts", KEY)))
    return stmts


def statements(v: Variant, assembled: Assembled) -> tuple[list[str], int]:
    """The statements and the deepest expression nesting in them."""
    if v.multi:
        stmts = temp_table_statements(assembled)
        return stmts, 0
    assert v.emitter is not None
    emitter = v.emitter()
    depth = sql_depth(emitter.select(assembled, FEATURES, KEY))
    return [ctas(OUT, emitter.render(assembled, FEATURES, KEY))], depth


def sql_depth(tree: exp.Expression) -> int:
    """Deepest nesting of expression nodes in the statement (sqlglot's tree; DuckDB counts its
    own parse tree, where the same operators nest the same way)."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, d = stack.pop()
        skip = isinstance(node, exp.Query | exp.CTE | exp.With | exp.Create | exp.Alias)
        d2 = d if skip or not isinstance(node, exp.Expression) else d + 1
        deepest = max(deepest, d2)
        for child in node.iter_expressions():
            stack.append((child, d2))
    return deepest


# -- measuring --------------------------------------------------------------------------------
def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn: Callable[[], Any]) -> tuple[float, float]:
    c0, t0 = cpu_s(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_s() - c0


@dataclass
class Result:
    model: str
    variant: str
    trees: int
    chars: int = 0
    depth: int = 0
    compile_s: float = 0.0
    plan_s: list[float] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)
    run_cpu_s: list[float] = field(default_factory=list)
    max_abs_diff: float | None = None
    error: str | None = None

    def best(self, xs: list[float]) -> float | None:
        return min(xs) if xs else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["plan_best_s"] = self.best(self.plan_s)
        d["run_best_s"] = self.best(self.run_s)
        d["run_cpu_best_s"] = self.best(self.run_cpu_s)
        return d


class Session:
    """One DuckDB connection with per-variant settings applied and reset."""

    def __init__(self, raw: duckdb.DuckDBPyConnection):
        self.raw = raw

    def _set(self, name: str, value: Any) -> None:
        lit = (
            exp.Literal.string(value)
            if isinstance(value, str)
            else exp.Boolean(this=value)
            if isinstance(value, bool)
            else exp.Literal.number(value)
        )
        item = exp.SetItem(this=exp.EQ(this=exp.column(name), expression=lit))
        self.raw.execute(render(exp.Set(expressions=[item])))

    def run(self, settings: dict[str, Any], fn: Callable[[], Any]) -> tuple[float, float]:
        for k, v in settings.items():
            self._set(k, v)
        try:
            return measure(fn)
        finally:
            for k in settings:
                if k == "threads":
                    self._set("threads", st.THREADS)
                else:
                    self.raw.execute("RESET " + render(exp.column(k)))


def library_scores(raw: Any, m: Model, estimator: Any) -> str:
    """The library's own scores for every row, in a table `__lib_<model>`."""
    types = input_types(m.fields)
    q = exp.select(exp.column(KEY), *(exp.column(n) for n in types)).from_(FEATURES)
    df = raw.execute(render(q)).df()
    scores = score_vector(estimator, model_frame(df, types))
    table = f"__lib_{m.name}"
    raw.register("__lib_view", pa.table({KEY: df[KEY].to_numpy(), "score": scores}))
    try:
        raw.execute(
            render(
                exp.Create(
                    this=exp.to_table(table),
                    kind="TABLE",
                    replace=True,
                    expression=exp.select(exp.Star()).from_("__lib_view"),
                )
            )
        )
    finally:
        raw.unregister("__lib_view")
    return table


def max_diff(raw: Any, lib_table: str, rows: int) -> float:
    a, b = exp.column("score", table="a"), exp.column("score", table="b")
    q = (
        exp.select(
            exp.func("max", exp.Abs(this=exp.Sub(this=a, expression=b))),
            exp.func("count", exp.Star()),
        )
        .from_(exp.to_table(OUT).as_("a"))
        .join(exp.to_table(lib_table).as_("b"), using=[KEY])
    )
    diff, n = raw.execute(render(q)).fetchone()
    if n != rows:
        raise RuntimeError(f"{n} of {rows} rows matched the library's scores")
    return float(diff)


def n_trees(assembled: Assembled) -> int:
    return len(layout.flatten_sum(_biggest_sum(assembled)))


def run_experiment(args: argparse.Namespace, workdir: Path) -> list[Result]:
    warehouse = Path(args.warehouse) if args.warehouse else workdir / "layout.duckdb"
    raw = st.connect(warehouse)
    tables = {r[0] for r in raw.execute("SHOW TABLES").fetchall()}
    if FEATURES in tables and args.reuse:
        st.say(f"reusing {FEATURES} in {warehouse}")
    else:
        st.build_warehouse(raw, args.rows)
    rows = raw.execute(
        render(exp.select(exp.func("count", exp.Star())).from_(FEATURES))
    ).fetchone()[0]
    mem = st.sample_connection(st.training_sample(raw, rows, args.train_rows))
    models = [MODELS[n] for n in args.models]
    variants = [v for v in VARIANTS if v.name in args.variants]
    session = Session(raw)
    results: dict[tuple[str, str], Result] = {}
    prepared: dict[tuple[str, str], list[str]] = {}
    libs: dict[str, str] = {}
    for m in models:
        fit, fit_s = st.timed(lambda m=m: train(mem, m))
        assembled = assemble(fit.estimator)
        trees = n_trees(assembled)
        st.say(f"{m.name}: {trees} trees, ROC AUC {fit.metrics['roc_auc']:.4f}, fit {fit_s:.0f} s")
        libs[m.name] = library_scores(raw, m, fit.estimator)
        for v in variants:
            if (m.name, v.name) in args.skip:
                continue
            r = Result(m.name, v.name, trees)
            results[m.name, v.name] = r
            try:
                (stmts, r.depth), r.compile_s = st.timed(lambda v=v, a=assembled: statements(v, a))
            except Exception as e:  # noqa: BLE001 -- a layout that cannot be built is a result
                r.error = f"compile: {type(e).__name__}: {str(e)[:200]}"
                st.say(f"  {v.name}: {r.error}")
                continue
            r.chars = sum(len(s) for s in stmts)
            prepared[m.name, v.name] = stmts
            st.say(f"  {v.name}: {r.chars:,} chars, depth {r.depth}, compile {r.compile_s:.1f} s")
    for rep in range(1, args.reps + 1):
        for (model, name), stmts in prepared.items():
            r = results[model, name]
            if r.error:
                continue
            v = next(x for x in variants if x.name == name)

            def execute(stmts: list[str] = stmts) -> None:
                for s in stmts:
                    raw.execute(s)

            try:
                if not v.multi:
                    select = stmts[0].split(" AS\n", 1)[1]
                    plan, _ = session.run(
                        v.settings, lambda s=select: raw.execute("EXPLAIN " + s).fetchall()
                    )
                    r.plan_s.append(plan)
                wall, cpu = session.run(v.settings, execute)
            except Exception as e:  # noqa: BLE001
                r.error = f"run: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                st.say(f"  rep {rep} {model} {name}: {r.error}")
                continue
            r.run_s.append(wall)
            r.run_cpu_s.append(cpu)
            if r.max_abs_diff is None:
                r.max_abs_diff = max_diff(raw, libs[model], rows)
            plan_txt = f"plan {r.plan_s[-1]:.3f} s, " if r.plan_s else ""
            st.say(
                f"  rep {rep} {model:10} {name:22} {plan_txt}run {wall:.2f} s "
                f"(cpu {cpu:.2f} s), max|diff| {r.max_abs_diff:.1e}"
            )
    mem.close()
    raw.close()
    return list(results.values())


def table(results: list[Result]) -> list[str]:
    head = (
        f"{'model':10} {'layout':22} {'chars':>10} {'depth':>6} {'compile s':>9} "
        f"{'plan s':>7} {'run s':>7} {'cpu s':>7} {'max|diff|':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        d = r.to_dict()

        def f(x: float | None, w: int, p: int) -> str:
            return f"{x:>{w}.{p}f}" if x is not None else f"{'-':>{w}}"

        diff = f"{r.max_abs_diff:>9.1e}" if r.max_abs_diff is not None else f"{'-':>9}"
        lines.append(
            f"{r.model:10} {r.variant:22} {r.chars:>10,} {r.depth:>6} {r.compile_s:>9.1f} "
            f"{f(d['plan_best_s'], 7, 3)} {f(d['run_best_s'], 7, 2)} "
            f"{f(d['run_cpu_best_s'], 7, 2)} {diff}" + (f"  {r.error}" if r.error else "")
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--train-rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    ap.add_argument("--warehouse", help="DuckDB file (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="reuse lead_features in --warehouse")
    ap.add_argument(
        "--skip", default="", help="model:variant pairs to leave out, e.g. lgbm1000:arith"
    )
    ap.add_argument("--out", help="also write the results as JSON")
    args = ap.parse_args(argv)
    args.skip = {tuple(p.split(":", 1)) for p in args.skip.split(",") if ":" in p}
    args.models = [m for m in args.models.split(",") if m]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [m for m in args.models if m not in MODELS] + [
        v for v in args.variants if v not in {x.name for x in VARIANTS}
    ]
    if unknown:
        ap.error(f"unknown models/variants: {unknown}")
    return args


def main(argv: list[str] | None = None) -> int:
    # LightGBM inside a Pipeline is fitted on the ColumnTransformer's unnamed array.
    warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
    args = parse_args(argv)
    head = [
        f"layout experiment: {args.rows:,} rows, models {', '.join(args.models)}, "
        f"best of {args.reps}",
        f"duckdb {duckdb.__version__} (threads {st.THREADS}), lightgbm {lightgbm.__version__}, "
        f"scikit-learn {sklearn.__version__}, sqlglot {sqlglot.__version__}, "
        f"numpy {np.__version__}, python {platform.python_version()}",
    ]
    for line in head:
        st.say(line)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlsm_layout_") as tmp:
        results = run_experiment(args, Path(tmp))
    st.say("")
    for line in [*head, *table(results)]:
        st.say(line)
    bad = [r for r in results if r.max_abs_diff is not None and r.max_abs_diff > TOLERANCE]
    st.say(f"total runtime {time.perf_counter() - t0:.0f} s; parity failures: {len(bad)}")
    if args.out:
        doc = {"header": head, "rows": args.rows, "results": [r.to_dict() for r in results]}
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

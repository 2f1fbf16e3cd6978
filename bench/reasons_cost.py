"""What reason codes cost in DuckDB: the demo's RandomForest (60 trees, depth 8) and LightGBM
(150 trees, 15 leaves) on the demo's 12 inputs (~40 one-hot + numeric columns), scored by SQL
alone and by SQL + the top-3 reasons, on N generated leads (docs/decisions/0021).

    .venv/bin/python bench/reasons_cost.py --rows 200000 [--train-rows 20000] [--runs 2] \
        [--models forest,lgbm] [--lookup search,chain]

Prints one table; a timing is the best of `--runs` of `CREATE OR REPLACE TABLE ... AS <sql>`
(threads = 2), wall and process CPU seconds (CPU time is the steadier number on a shared
machine); `plan` is an EXPLAIN of the same statement. `--lookup` lists the leaf-id lookup
layouts to compare (mlsm_py.compile.reasons.LOOKUP); "list" is an experiment outside the
compiler, a DuckDB list indexed by the leaf id (an AST node the emitters do not have). The
reason columns of every variant are checked against the library's margin (expected + sum ==
margin) before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import duckdb
import numpy as np
import pandas as pd
from sqlglot import exp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mlsm_py.compile import assemble, ast, reasons  # noqa: E402
from mlsm_py.compile.emitter import SqlEmitter  # noqa: E402
from mlsm_py.compile.reasons import (  # noqa: E402
    as_assembled,
    contribution_columns,
    contributions,
    top_reasons,
)
from mlsm_py.demo.data import generate_leads  # noqa: E402
from models_py import leads  # noqa: E402


def _frame(n: int) -> pd.DataFrame:
    df = generate_leads(n, seed=11).to_pandas()
    df["pages_per_visit"] = df["pages_viewed"] / df["visits"].where(df["visits"] > 0)
    for c in leads.CATEGORIES:
        df[c] = df[c].astype(object).where(df[c].notna(), np.nan)
    for c in leads.NUMBERS:
        df[c] = df[c].astype("float64")
    return df


class _ListLookup(ast.Expr):
    """Experiment only: `[v_0, v_1, ...][leaf + 1]`, the value at the leaf id."""

    output_size = 1

    def __init__(self, leaf: ast.Expr, values: list[float]):
        self.leaf = leaf
        self.values = values
        self.expr = leaf  # so ast.children() walks to the leaf column


class _ListEmitter(SqlEmitter):
    def visit__ListLookup(self, node: _ListLookup, state) -> exp.Expression:
        values = exp.Array(expressions=[self.number(v) for v in node.values])
        index = exp.Add(
            this=exp.cast(self._visit(node.leaf, state), exp.DataType.build("int")),
            expression=exp.Literal.number(1),
        )
        return exp.func("list_extract", values, index)


def _list_lookup(leaf: ast.Expr, table: dict[int, float], leaf_ids: list[int]) -> ast.Expr:
    values = [0.0] * (max(leaf_ids) + 1)
    for i, v in table.items():
        values[i] = v
    return _ListLookup(leaf, values)


def _timed(con, sql: str, runs: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    con.execute(f"EXPLAIN {sql}").fetchall()
    plan = time.perf_counter() - t0
    best, cpu = float("inf"), float("inf")
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        con.execute(f"CREATE OR REPLACE TABLE bench_out AS {sql}")
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return plan, best, cpu


_LOOKUP = reasons._lookup


def _depth(node: dict) -> int:
    if "leaf_value" in node:
        return 0
    return 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))


def _treeshap_stats(df: pd.DataFrame, train: pd.DataFrame, inputs: list[str]) -> None:
    """Why exact TreeSHAP is not a per-leaf constant, and what LightGBM's own exact TreeSHAP
    costs against its prediction, on the demo LightGBM."""
    model = leads.lgbm.estimator
    model.fit(train[inputs], train["converted"].astype(int))
    booster = model[-1].booster_
    x = model[:-1].transform(df[inputs])
    depths = [_depth(t["tree_structure"]) for t in booster.dump_model()["tree_info"]]
    sample = x[:20_000]
    leaves = booster.predict(sample, pred_leaf=True)
    shap = booster.predict(sample, pred_contrib=True)
    saabas_like = []
    for t in range(leaves.shape[1]):
        per_leaf = {}
        one = booster.predict(sample, pred_contrib=True, start_iteration=t, num_iteration=1)
        for leaf, row in zip(leaves[:, t], np.round(one, 12), strict=True):
            per_leaf.setdefault(int(leaf), set()).add(row.tobytes())
        saabas_like.append(max(len(v) for v in per_leaf.values()))
    t0 = time.perf_counter()
    booster.predict(x, raw_score=True)
    predict = time.perf_counter() - t0
    t0 = time.perf_counter()
    booster.predict(x, pred_contrib=True)
    contrib = time.perf_counter() - t0
    print(f"trees={len(depths)} depth max={max(depths)} mean={np.mean(depths):.1f}")
    print(
        f"distinct TreeSHAP vectors inside one leaf (20,000 rows): max={max(saabas_like)} "
        f"mean over trees of the per-tree max={np.mean(saabas_like):.1f}"
    )
    print(
        f"LightGBM on {len(x)} rows: predict raw {predict:.2f} s, pred_contrib (exact "
        f"TreeSHAP) {contrib:.2f} s ({contrib / predict:.1f}x); shap columns {shap.shape[1]}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--train-rows", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--models", default="forest,lgbm")
    ap.add_argument("--lookup", default="search")
    ap.add_argument("--treeshap", action="store_true", help="only the TreeSHAP statistics")
    args = ap.parse_args()
    df = _frame(args.rows)
    train = df[df["converted"].notna()].iloc[: args.train_rows]
    inputs = [*leads.NUMBERS, *leads.CATEGORIES]
    if args.treeshap:
        _treeshap_stats(df, train, inputs)
        return
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("src", df[["lead_id", *inputs]])
    con.execute("CREATE TABLE leads AS SELECT * FROM src")
    check = df.iloc[:2000]
    print(f"rows={args.rows} train={len(train)} inputs={len(inputs)} (uptime: {os.getloadavg()})")
    head = f"{'model':8} {'lookup':7} {'variant':22} {'sql KB':>7} {'render s':>8}"
    print(f"{head} {'plan s':>6} {'run s':>6} {'cpu s':>6}")
    for which in args.models.split(","):
        model = getattr(leads, which).estimator
        model.fit(train[inputs], train["converted"].astype(int))
        name = type(model[-1]).__name__[:8]
        score = assemble(model)
        lookups = args.lookup.split(",")
        for lookup in lookups:
            first = lookup == lookups[0]
            _variants(con, model, name, score, lookup, check, inputs, args.runs, first)


def _variants(con, model, name, score, lookup, check, inputs, runs, with_score) -> None:
    emitter = SqlEmitter
    if lookup == "list":
        emitter = _ListEmitter
        reasons._lookup = _list_lookup
    else:
        reasons._lookup = _LOOKUP
        reasons.LOOKUP = lookup
    c = contributions(model)
    # The identity, on the first rows, before timing anything.
    cols = contribution_columns(c)
    sql = emitter().render(as_assembled(c.inputs, cols), "leads", "lead_id")
    got = con.execute(f"{sql} ORDER BY lead_id LIMIT 2000").df()
    terms = got[[f"contribution_{n}" for n in c.inputs]].to_numpy().sum(axis=1)
    if "LGBM" in name:
        margin = model.predict(check[inputs], raw_score=True)
    else:
        margin = model.predict_proba(check[inputs])[:, 1]
    assert np.max(np.abs(c.expected + terms - margin)) <= 1e-9
    variants = {
        "score": score,
        "score + top-3 reasons": as_assembled(
            c.inputs, [("score", score.score), *top_reasons(c, 3)]
        ),
        "score + all terms": as_assembled(c.inputs, [("score", score.score), *cols[:-2]]),
    }
    for label, assembled in variants.items():
        if label == "score" and not with_score:
            continue
        t0 = time.perf_counter()
        sql = emitter().render(assembled, "leads", "lead_id")
        render = time.perf_counter() - t0
        plan, run, cpu = _timed(con, sql, runs)
        row = f"{name:8} {lookup:7} {label:22} {len(sql) / 1024:7.0f} {render:8.2f}"
        print(f"{row} {plan:6.2f} {run:6.2f} {cpu:6.2f}", flush=True)


if __name__ == "__main__":
    main()

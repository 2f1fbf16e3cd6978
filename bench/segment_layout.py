"""Segmented scoring in DuckDB: one statement routing 21 market fits, or 21 tables unioned?

Builds a warehouse (`lead_features` of N demo leads plus a seeded `market` column of 21 levels
of unequal size), fits each of the demo's SQL families (`lead_logreg`, `lead_lgbm`,
`lead_extra_trees` from `models_py.MODELS`; the Python-route forest is skipped) once per market
on ~--train-rows of that market's leads, and times scoring all N rows, each fit on its market:

a   one CTAS: one CTE per market, each the fit's SQL over `(select * from lead_features where
    market = 'mXX')`, then `union all` of the CTEs (one scoring model, routing inside)
a2  as a, the fits as `union all` of subqueries instead of named CTEs (the CTEs are what makes
    a plan slowly)
b   21 CTAS, one per market fit over its market's rows, then one CTAS of the union all of the
    21 tables (per-segment dbt models unioned); reported as the sum and its two steps
c   every fit over all rows, joined back on the key to keep its market's rows; at --pick-rows
    only (the first leads), next to a and a2 at the same rows
1   one fit of the family trained on all markets, over all rows: the unsegmented yardstick

Each fit's SQL is the emitter's (`SqlEmitter("duckdb").render`, as `mlsm_py.to_sql`) with the
constants `market` and `fit_id`, as `mlsm_py.flow.compiled` builds a scoring model; every layout
writes (lead_id, market, fit_id, score). plan = EXPLAIN of the statement(s); exec = wall time of
the CTAS(s), planning included; cpu = this process's CPU time meanwhile (all DuckDB threads; the
steadier number on a shared machine). Best of --runs, layouts interleaved. a, a2, b and c must
write identical rows (max |diff| 0, else the script stops). "plan, k fits" plans a and a2 with
the first k fits. DuckDB runs `SET threads = 2`; the warehouse is in a temporary directory.

    python bench/segment_layout.py [--rows 1000000] [--train-rows 3000] [--runs 2]
        [--pick-rows 100000] [--models lead_logreg,lead_lgbm] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import score_throughput as st

from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.flow.compiled import RELATION
from mlsm_py.train.trainer import train
from models_py import MODELS

FEATURES = st.FEATURES
PICK = "lead_features_pick"
MARKETS = [f"m{i:02d}" for i in range(1, 22)]
FAMILIES = ["lead_logreg", "lead_lgbm", "lead_extra_trees"]
PLAN_KS = [1, 3, 7, 14, 21]
say, timed = st.say, st.timed


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu() -> float:
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


def add_markets(con: Any, rows: int, pick_rows: int) -> dict[str, int]:
    """A market per lead from a seeded RNG, market i's share proportional to i ** -0.8; the
    first `pick_rows` leads copied to PICK."""
    w = np.arange(1, len(MARKETS) + 1) ** -0.8
    idx = np.random.default_rng(11).choice(len(MARKETS), rows, p=w / w.sum())
    ids = con.execute(f"select lead_id from {FEATURES} order by lead_id").fetchnumpy()["lead_id"]
    con.register("__markets", pa.table({"lead_id": ids, "market": np.array(MARKETS)[idx]}))
    con.execute(
        f"create or replace table {FEATURES} as select f.*, m.market from {FEATURES} f "
        "join __markets m using (lead_id) order by lead_id"
    )
    con.unregister("__markets")
    con.execute(f"create table {PICK} as from {FEATURES} where lead_id <= {pick_rows}")
    return dict(
        con.execute(f"select market, count(*) from {FEATURES} group by 1 order by 1").fetchall()
    )


def train_on(con: Any, model: Any, where: str, n: int, train_rows: int) -> Any:
    """Train `model` on every k-th lead (by id, so the sample spans the year) of `where`."""
    step = max(1, n // train_rows)
    q = f"select * from {FEATURES} where {where} and lead_id % {step} = 0 order by lead_id"
    mem = st.sample_connection(con.execute(q).fetch_arrow_table())
    try:
        return train(mem, model)
    finally:
        mem.close()


def fit_sql(fit: Any, market: str, relation: str) -> str:
    """The fit's scoring SELECT over `relation`, built as `mlsm_py.flow.compiled` builds it."""
    consts = {"market": market, "fit_id": f"{fit.model.name}_{market}"}
    body = SqlEmitter("duckdb").render(assemble(fit.estimator), RELATION, fit.model.key, consts)
    return body.replace(RELATION, relation)


def segment(table: str, market: str) -> str:
    return f"(select * from {table} where market = '{market}') as segment"


def union_of(selects: list[str]) -> str:
    return "\nunion all\n".join(selects)


def cte_union(sqls: dict[str, str]) -> str:
    ctes = ",\n".join(f"seg_{m} as (\n{s}\n)" for m, s in sqls.items())
    return f"with {ctes}\n" + union_of([f"select * from seg_{m}" for m in sqls])


def subquery_union(sqls: dict[str, str]) -> str:
    return union_of([f"select * from (\n{s}\n)" for s in sqls.values()])


def pick(sqls: dict[str, str]) -> str:
    """Every fit over all PICK rows, joined back to its market's keys."""
    keys = "(select lead_id from {} where market = '{}') as k on s.lead_id = k.lead_id"
    return union_of(
        [f"select s.* from (\n{s}\n) as s join " + keys.format(PICK, m) for m, s in sqls.items()]
    )


def plan(con: Any, selects: list[str], runs: int) -> float:
    """Best of `runs` of EXPLAIN of every SELECT in turn (their sum)."""
    return min(
        sum(timed(lambda s=s: con.execute("EXPLAIN " + s).fetchall())[1] for s in selects)
        for _ in range(runs)
    )


def compare(con: Any, a: str, b: str, rows: int) -> float:
    """Stop unless tables `a` and `b` hold the same rows; their max |score diff| (0)."""
    n, na, nb, diff, other = con.execute(
        "select count(*), count(a.lead_id), count(b.lead_id), max(abs(a.score - b.score)), "
        "count(*) filter (where a.score is distinct from b.score or a.market is distinct from "
        "b.market or a.fit_id is distinct from b.fit_id) "
        f"from {a} a full join {b} b on a.lead_id = b.lead_id"
    ).fetchone()
    if not (n == na == nb == rows and other == 0 and (diff or 0.0) == 0.0):
        raise SystemExit(f"{a} and {b} differ: {n}, {na}, {nb} rows, {other} differ, max {diff}")
    say(f"    {a} = {b}: {rows:,} rows, identical, max |diff| {diff or 0.0}")
    return float(diff or 0.0)


def bench(con: Any, layouts: dict[str, tuple[list[str], list[str]]], runs: int) -> dict:
    """layouts: name -> (SELECTs, result tables); the last SELECT may read the earlier tables.
    Times every layout's CTASs (runs interleaved), then plans its SELECTs."""
    best: dict[str, tuple[float, float, list[float]]] = {}
    for i in range(1, runs + 1):
        line = []
        for name, (selects, tables) in layouts.items():
            c0 = cpu()
            parts = [
                timed(lambda q=q, t=t: con.execute(st.ctas_over_text(t, q)))[1]
                for q, t in zip(selects, tables, strict=True)
            ]
            if name not in best or sum(parts) < best[name][0]:
                best[name] = (sum(parts), cpu() - c0, parts)
            line.append(f"{name} {sum(parts):.2f} s")
        say(f"    run {i}/{runs}: " + ", ".join(line))
    out = {}
    for name, (selects, tables) in layouts.items():
        wall, cpu_s, parts = best[name]
        rows = con.execute(f"select count(*) from {tables[-1]}").fetchone()[0]
        out[name] = {"plan_s": plan(con, selects, runs), "exec_s": wall, "cpu_s": cpu_s}
        out[name] |= {"rows": rows, "sql_chars": sum(map(len, selects))}
        if len(parts) > 1:  # b: the 21 tables, then the union step
            out[name] |= {"tables_s": sum(parts[:-1]), "union_s": parts[-1]}
            out[name] |= {"union_plan_s": plan(con, selects[-1:], runs)}
    return out


def bench_family(con: Any, model: Any, sizes: dict[str, int], args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    fits = {m: train_on(con, model, f"market = '{m}'", sizes[m], args.train_rows) for m in MARKETS}
    whole = train_on(con, model, "true", args.rows, args.train_rows)
    per_market = [f.train_rows for f in fits.values()]
    say(
        f"  {model.name}: 21 market fits ({min(per_market):,}-{max(per_market):,} train rows) "
        f"+ 1 unsegmented ({whole.train_rows:,}) in {time.perf_counter() - t0:.1f} s"
    )
    seg = {m: fit_sql(f, m, segment(FEATURES, m)) for m, f in fits.items()}
    b_union = union_of([f"select * from seg_b_{m}" for m in MARKETS])
    layouts = {
        "1": ([fit_sql(whole, "all", FEATURES)], ["unseg"]),
        "a": ([cte_union(seg)], ["seg_a"]),
        "a2": ([subquery_union(seg)], ["seg_a2"]),
        "b": ([*seg.values(), b_union], [*(f"seg_b_{m}" for m in MARKETS), "seg_b"]),
    }
    out = {"model": model.name, "train_rows": per_market, "unseg_train_rows": whole.train_rows}
    out["layouts"] = bench(con, layouts, args.runs)
    out["max_abs_diff"] = {
        "a_b": compare(con, "seg_a", "seg_b", args.rows),
        "a_a2": compare(con, "seg_a", "seg_a2", args.rows),
    }
    scaling: dict[str, dict[int, float]] = {"a": {}, "a2": {}}
    for k in PLAN_KS:
        first = dict(list(seg.items())[:k])
        for name, build in (("a", cte_union), ("a2", subquery_union)):
            got = out["layouts"][name]["plan_s"] if k == len(MARKETS) else None
            scaling[name][k] = got or plan(con, [build(first)], args.runs)
        say(f"    plan with {k} fits: a {scaling['a'][k]:.3f} s, a2 {scaling['a2'][k]:.3f} s")
    out["plan_scaling_s"] = scaling
    if args.pick_rows:
        sub = {m: fit_sql(f, m, segment(PICK, m)) for m, f in fits.items()}
        pk = {
            "a": ([cte_union(sub)], ["pick_a"]),
            "a2": ([subquery_union(sub)], ["pick_a2"]),
            "c": ([pick({m: fit_sql(f, m, PICK) for m, f in fits.items()})], ["pick_c"]),
        }
        say(f"    at {args.pick_rows:,} rows:")
        out["pick"] = bench(con, pk, args.runs)
        out["max_abs_diff"]["pick_a_c"] = compare(con, "pick_a", "pick_c", args.pick_rows)
    say(f"    load average {os.getloadavg()}")
    return out


LABELS = {
    "1": "1   unsegmented (1 fit)",
    "a": "a   CTE per market, union (1 CTAS)",
    "a2": "a2  subquery per market, union",
    "b": "b   21 CTAS + union CTAS",
    "b.tables": "     b: the 21 market tables",
    "b.union": "     b: the union step",
    "c": "c   every fit on all rows, pick",
}


def table(results: list[dict], rows: int, pick_rows: int) -> list[str]:
    cols = [("rows", 10), ("plan s", 8), ("exec s", 8), ("cpu s", 8), ("x unseg", 8)]
    head = f"{'model':<17}{'layout':<36}" + "".join(f"{n:>{w}}" for n, w in cols)
    lines = [head, "-" * len(head)]
    for r in results:
        lay = dict(r["layouts"])
        b = lay["b"]
        tables_plan = b["plan_s"] - b["union_plan_s"]
        lay["b.tables"] = b | {"exec_s": b["tables_s"], "plan_s": tables_plan, "cpu_s": None}
        lay["b.union"] = b | {"exec_s": b["union_s"], "plan_s": b["union_plan_s"], "cpu_s": None}
        groups = [(lay, ["1", "a", "a2", "b", "b.tables", "b.union"], lay["1"]["exec_s"])]
        if "pick" in r:
            groups.append((r["pick"], ["a", "a2", "c"], r["pick"]["a2"]["exec_s"]))
        for entries, names, ref in groups:
            for n in names:
                e = entries[n]
                c = "-" if e["cpu_s"] is None else f"{e['cpu_s']:.2f}"
                x = f"{e['exec_s'] / ref:.2f}"
                lines.append(
                    f"{r['model']:<17}{LABELS[n]:<36}{e['rows']:>10,}{e['plan_s']:>8.3f}"
                    f"{e['exec_s']:>8.2f}{c:>8}{x:>8}"
                )
        for name, sc in r["plan_scaling_s"].items():
            per = ", ".join(f"{k}: {1000 * s / k:.0f}" for k, s in sc.items())
            lines.append(f"{'':<17}plan {name:<2}, k fits -> ms per fit: {per}")
    lines.append(
        f"x unseg: exec s / the unsegmented fit's exec s ({rows:,} rows); rows {pick_rows:,}: "
        "the pick comparison on the first leads, x = exec s / a2's; plan b = 21 SELECTs + union"
    )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="leads to generate and score")
    ap.add_argument("--train-rows", type=int, default=3000, help="training sample per fit")
    ap.add_argument("--runs", type=int, default=2, help="runs per timing (best is kept)")
    ap.add_argument("--pick-rows", type=int, default=100_000, help="rows for (c); 0 skips it")
    ap.add_argument("--models", default=",".join(FAMILIES), help="comma-separated subset")
    ap.add_argument("--out", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)
    args.models = [n for n in args.models.split(",") if n]
    if unknown := [n for n in args.models if n not in FAMILIES]:
        ap.error(f"unknown models {unknown}; known: {', '.join(FAMILIES)}")
    if args.rows < 100_000 or args.runs < 1 or args.train_rows < 1000:
        ap.error("need --rows >= 100000 (a year of leads per market), --runs, --train-rows >= 1000")
    args.pick_rows = min(args.pick_rows, args.rows)
    return args


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
    args = parse_args(argv)
    t0 = time.perf_counter()
    head = [*st.header(args.rows, args.train_rows)[1:3], f"load at start: {uptime()}"]
    for line in head:
        say(line)
    results = []
    with tempfile.TemporaryDirectory(prefix="mlsm_segment_") as tmp:
        con = st.connect(Path(tmp) / "bench.duckdb")
        try:
            st.build_warehouse(con, args.rows)
            sizes = add_markets(con, args.rows, args.pick_rows)
            for m in (m for m in MODELS if m.name in args.models):
                results.append(bench_family(con, m, sizes, args))
        finally:
            con.close()
    elapsed = time.perf_counter() - t0
    head.append(
        f"{args.rows:,} rows in 21 markets of {min(sizes.values()):,}-{max(sizes.values()):,} "
        f"leads; each fit trained on ~{args.train_rows:,} leads; best of {args.runs}"
    )
    say("")
    for line in [*head, *table(results, args.rows, args.pick_rows), f"load at end: {uptime()}"]:
        say(line)
    say(f"total runtime {elapsed:.1f} s")
    if args.out:
        doc = {"header": head, "args": vars(args), "market_sizes": sizes}
        doc |= {"total_runtime_s": elapsed, "results": results}
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

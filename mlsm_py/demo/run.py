"""`mlsm demo`: the lifecycle verbs on the demo project, with synthetic leads. It never
replaces leads a warehouse already holds unless told to (--replace-data)."""

from __future__ import annotations

import time

import duckdb
import sqlglot
from sqlglot import exp

from mlsm_py.demo.data import generate_leads, load_leads, rows_in
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_train
from mlsm_py.flow.session import Session


def top_leads_sql(call_list: str, key: str, n: int = 10) -> str:
    q = (
        exp.select("call_rank", key, "winning_model", "score", "percentile")
        .from_(exp.to_table(f"published.{call_list}"))
        .order_by(exp.column("call_rank"))
        .limit(n)
    )
    return sqlglot.transpile(q.sql("duckdb"), read="duckdb", write="duckdb", pretty=True)[0]


def run(s: Session, rows: int, seed: int, replace_data: bool) -> None:
    t0 = time.perf_counter()
    p = s.project
    p.warehouse.parent.mkdir(parents=True, exist_ok=True)
    s.say(f"warehouse: {p.warehouse}")
    con = duckdb.connect(str(p.warehouse))
    try:
        held = rows_in(con)
        if held and not replace_data:
            s.say(
                f"[data] raw.leads already holds {held:,} rows: kept "
                "(--replace-data regenerates it)"
            )
        else:
            verb = f"replacing {held:,} rows with" if held else "loading"
            s.say(f"[data] {verb} {rows:,} synthetic leads (seed {seed}) into raw.leads")
            load_leads(con, generate_leads(rows, seed))
    finally:
        con.close()
    s.say("mlsm train")
    run_train(s)
    s.say("mlsm build")
    run_build(s)
    lists = [x for x in s.defs.summaries if x.call_list is not None]
    if lists:
        key = s.defs.models[0].key
        name = lists[0].call_list.name
        sql = top_leads_sql(name, key, 10)
        con = duckdb.connect(str(p.warehouse))
        try:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            top = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()
        s.say(f"top 10 of published.{name} (open leads in call order, {lists[0].name}):")
        s.say(f"  {'rank':>4}  {key:>10}  {'winning_model':<18} {'score':>6}  percentile")
        for r in top:
            s.say(
                f"  {r['call_rank']:>4}  {r[key]:>10}  {r['winning_model']:<18} "
                f"{r['score']:.4f}  {r['percentile']:10.2f}"
            )
        s.say("\nThe SQL an analyst runs for this list:\n")
        s.say(sql + ";")
    s.say(f"\ndone in {time.perf_counter() - t0:.1f} s")

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


def top_leads_sql(summary: str, key: str, n: int = 10) -> str:
    q = (
        exp.select(key, "winning_model", "winning_version", "winning_fit_id", "score")
        .from_(exp.to_table("published.winners"))
        .where(exp.column("summary_model").eq(exp.Literal.string(summary)))
        .order_by(exp.column("score").desc(), exp.column(key))
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
    summaries = s.defs.summaries
    if summaries:
        key = s.defs.models[0].key
        sql = top_leads_sql(summaries[0].name, key, 10)
        con = duckdb.connect(str(p.warehouse))
        try:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            top = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()
        s.say(f"top 10 open leads by winning score (published.winners, {summaries[0].name}):")
        s.say(f"  {key:>10}  {'winning_model':<18} {'version':>7}  {'fit':<16}  score")
        for r in top:
            s.say(
                f"  {r[key]:>10}  {r['winning_model']:<18} {r['winning_version']:>7}  "
                f"{r['winning_fit_id']:<16}  {r['score']:.4f}"
            )
        s.say("\nThe SQL an analyst runs for this list:\n")
        s.say(sql + ";")
    s.say(f"\ndone in {time.perf_counter() - t0:.1f} s")

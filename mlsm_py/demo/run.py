"""`mlsm demo`: the lifecycle verbs on the demo project, with synthetic leads. It never
replaces leads a warehouse already holds unless told to (--replace-data)."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

from mlsm_py.demo.data import DAYS, START, generate_leads, load_leads, rows_in
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_train
from mlsm_py.flow.session import Session


def top_leads_sql(call_list: str, key: str, n: int = 10, why: bool = False) -> str:
    cols = ["call_rank", key, "winning_model", "score", "percentile"]
    q = (
        exp.select(*cols, *(["reason_1_text"] if why else []))
        .from_(exp.to_table(f"published.{call_list}"))
        .order_by(exp.column("call_rank"))
        .limit(n)
    )
    return sqlglot.transpile(q.sql("duckdb"), read="duckdb", write="duckdb", pretty=True)[0]


def _all_trained(s: Session) -> bool:
    from mlsm_py.registry import store

    if not s.project.target.exists():
        return False
    with s.registry() as con:
        champions = store.aliases(con)
    return all(store.CHAMPION in champions.get(m.name, {}) for m in s.defs.models)


def _time_passes(s: Session, rows: int, seed: int) -> None:
    """Three weeks later: the open leads' outcomes have arrived, and a new batch of leads
    came in through a tracker that counts 40% of visits twice (a drift in one input)."""
    newer = generate_leads(
        max(rows // 12, 1000),
        seed + 1,
        start=START + np.timedelta64(DAYS, "D"),
        days=21,
        first_id=rows + 1,
        double_counted=0.4,
        outcomes="none",
    )
    both = pa.concat_tables([generate_leads(rows, seed, outcomes="all"), newer])
    t = s.project.target
    con = t.connect()
    try:
        load_leads(con, both, target=t)
    finally:
        con.close()
    s.say(
        f"[time passes] outcomes arrived for the open leads; {len(newer):,} newer leads, "
        "40% of their visits counted twice"
    )


def _realised(s: Session) -> None:
    from mlsm_py.flow import evaluate

    with s.registry() as con:
        reports = evaluate.realised(s, con)
    for r in reports:
        best = r.best_member()
        s.say(
            f"realised: {r.summary.name} on {r.rows:,} leads with an outcome: ROC AUC "
            f"{r.metrics['roc_auc']:.4f}, top-10% capture {r.metrics['top_decile_capture']:.1%} "
            f"(best member {best}: {r.members[best]['roc_auc']:.4f})"
        )


def run(s: Session, rows: int, seed: int, replace_data: bool) -> None:
    t0 = time.perf_counter()
    p = s.project
    t = p.target
    created = t.ensure_database()
    s.say(f"warehouse: {t.describe()} (dbt target {t.name}" + (", created)" if created else ")"))
    con = t.connect()
    try:
        held = rows_in(con)
        loaded = not held or replace_data
        if not loaded:
            s.say(
                f"[data] raw.leads already holds {held:,} rows: kept "
                "(--replace-data regenerates it)"
            )
        else:
            verb = f"replacing {held:,} rows with" if held else "loading"
            s.say(f"[data] {verb} {rows:,} synthetic leads (seed {seed}) into raw.leads")
            load_leads(con, generate_leads(rows, seed), target=t)
    finally:
        con.close()
    if not loaded and _all_trained(s):
        s.say("mlsm train: every model has a champion (`mlsm retrain` trains challengers)")
    else:
        s.say("mlsm train")
        run_train(s)
    s.say("mlsm build")
    run_build(s)
    if loaded:
        _time_passes(s, rows, seed)
        s.say("mlsm build")
        run_build(s)
        _realised(s)
    lists = [x for x in s.defs.summaries if x.call_list is not None]
    if lists:
        key = s.defs.models[0].key
        name = lists[0].call_list.name
        why = any(m.reasons for m in s.defs.models if m.name in lists[0].models)
        sql = top_leads_sql(name, key, 5, why)
        con = t.connect()
        try:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            top = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()
        s.say(f"top of published.{name} (open leads in call order, {lists[0].name}):")
        s.say(
            f"  {'rank':>4}  {key:>10}  {'winning_model':<18} {'score':>6}  percentile"
            + ("  first reason" if why else "")
        )
        for r in top:
            s.say(
                f"  {r['call_rank']:>4}  {r[key]:>10}  {r['winning_model']:<18} "
                f"{r['score']:.4f}  {r['percentile']:10.2f}"
                + (f"  {r['reason_1_text']}" if why else "")
            )
        s.say(f"the SQL: {' '.join(sql.split())};")
    from mlsm_py.report import html

    s.say(f"report: {html.write(s)} (mlsm report rewrites it)")
    s.say(f"done in {time.perf_counter() - t0:.1f} s")

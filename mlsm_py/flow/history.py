"""The history mlsm keeps beside the published tables (schema `history`), so what was scored
and checked stays queryable after the next build replaces `published.*`:

scores        a row when a record's score by a model and role first appears or changes (a
              new fit, or new inputs): what each record was scored, by which fit, and when
winners       the same for each record's winner per summary model (the arm included)
input_drift   every build's input-drift rows (audit.input_drift), published or failed
score_checks  every build's score-check rows (audit.score_checks), published or failed

Unchanged scores add nothing, so the score history grows with new records and with changes,
not with the number of builds. The tables exist before the first build (the monitoring views
read them), with the key column typed as the feature relation's.
"""

from __future__ import annotations

from typing import Any

import duckdb
from sqlglot import exp

from mlsm_py.registry import store
from mlsm_py.spec import Definitions

HISTORY = "history"
AUDIT = "audit"


def _columns(key: str, key_type: str) -> dict[str, str]:
    k = exp.to_identifier(key, quoted=True).sql("duckdb")
    return {
        "scores": f"""{k} {key_type}, model_name varchar, model_version integer,
            fit_id varchar, role varchar, model_status varchar, score double,
            percentile double, decile integer, run_id varchar, published_at timestamptz,
            segment varchar, fallback boolean""",
        "winners": f"""{k} {key_type}, summary_model varchar, winning_model varchar,
            winning_version integer, winning_fit_id varchar, score double, percentile double,
            decile integer, arm varchar, run_id varchar, published_at timestamptz""",
        "input_drift": """model_name varchar, fit_id varchar, column_name varchar,
            kind varchar, rows_checked bigint, psi double, unseen_share double,
            warn_at double, error_at double, level varchar, run_id varchar,
            build_status varchar, built_at timestamptz""",
        "score_checks": """model_name varchar, role varchar, fit_id varchar,
            rows_checked bigint, null_share double, mean_score double, psi double,
            warn_at double, error_at double, mean_low double, mean_high double,
            level varchar, run_id varchar, build_status varchar, built_at timestamptz""",
    }


# Which columns say that a record's row changed (the history adds a row only then).
IDENTITY = {
    "scores": (["model_name", "role"], ["fit_id", "score"]),
    "winners": (["summary_model"], ["winning_fit_id", "winning_model", "score", "arm"]),
}


def ensure(con: duckdb.DuckDBPyConnection, defs: Definitions) -> None:
    """Create the history tables if they are missing (typed from the feature relation)."""
    m = defs.models[0]
    types = dict(store.relation_columns(con, m.features))
    con.execute(f"create schema if not exists {HISTORY}")
    for name, cols in _columns(m.key, types.get(m.key, "varchar")).items():
        con.execute(f"create table if not exists {HISTORY}.{name} ({cols})")
        # A history an older mlsm created gains the newer columns (NULL in its old rows).
        have = {c for c, _ in store.relation_columns(con, f"{HISTORY}.{name}")}
        for col in cols.split(","):
            col_name, col_type = col.split()[:2]
            if col_name.strip('"') not in have:
                con.execute(f"alter table {HISTORY}.{name} add column {col_name} {col_type}")


def append_published(
    con: duckdb.DuckDBPyConnection,
    key: str,
    published_at: Any,
    scope: dict[str, str | None] | None = None,
) -> None:
    """Rows whose score (winner) is new or changed; inside the publish transaction.
    `scope`: per table, a condition on a row (alias `{t}`) outside of which nothing can have
    changed (what an incremental build scored: flow/state.scope); None: look at every row."""
    k = exp.to_identifier(key, quoted=True).sql("duckdb")
    for name, (part, changed) in IDENTITY.items():
        if not store.table_exists(con, AUDIT, name):
            continue
        where = (scope or {}).get(name)
        only_now = f" and ({where.format(t='now_')})" if where else ""
        only_then = f" where ({where.format(t='h')})" if where else ""
        by = ", ".join([k, *part])
        same = " and ".join(
            f"latest.{c} is not distinct from now_.{c}" for c in [k, *part, *changed]
        )
        # The history's own columns only: the published row may carry more (reason codes,
        # which change with every input and are not history).
        have = [c for c, _ in store.relation_columns(con, f"{HISTORY}.{name}")]
        names = [exp.to_identifier(c, quoted=True).sql("duckdb") for c in have]
        cols = [n for n, c in zip(names, have, strict=True) if c != "published_at"]
        con.execute(
            f"""
            insert into {HISTORY}.{name} ({", ".join(cols)}, published_at)
            with latest as (
                select * from (
                    select *, row_number() over (
                        partition by {by} order by published_at desc
                    ) as mlsm_newest
                    from {HISTORY}.{name} as h{only_then}
                ) as ranked
                where mlsm_newest = 1
            )
            select {", ".join(f"now_.{c}" for c in cols)}, cast(? as timestamptz)
            from {AUDIT}.{name} as now_
            where not exists (select 1 from latest where {same}){only_now}
            """,
            [published_at],
        )


def append_checks(con: duckdb.DuckDBPyConnection, run_id: str, status: str, built_at: Any):
    """This build's check rows, whether it published or failed (a failure is when they
    matter most). Rows of an earlier run left in audit (a check that did not run this time)
    are not this build's and are left out."""
    for name in ("input_drift", "score_checks"):
        if store.table_exists(con, AUDIT, name) and store.table_exists(con, HISTORY, name):
            audit = {c for c, _ in store.relation_columns(con, f"{AUDIT}.{name}")}
            cols = [
                exp.to_identifier(c, quoted=True).sql("duckdb")
                for c, _ in store.relation_columns(con, f"{HISTORY}.{name}")
                if c in audit and c not in ("build_status", "built_at")
            ]
            con.execute(
                f"insert into {HISTORY}.{name} ({', '.join(cols)}, build_status, built_at) "
                f"select {', '.join(cols)}, ?, cast(? as timestamptz) from {AUDIT}.{name} "
                "where run_id = ?",
                [status, built_at, run_id],
            )

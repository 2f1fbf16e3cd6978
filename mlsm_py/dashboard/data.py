"""The dashboard's queries. They read the readers' copy (flow/readers.py), never the warehouse:
DuckDB admits one writer or many readers per file, and any reader of the warehouse makes the
next `mlsm build` fail. A render opens the copy read-only, runs what it needs, and closes it
before drawing; a build that replaces the copy meanwhile is what the next render shows.

Every table is optional: a copy written by an older mlsm, or before a model has outcomes,
lacks some, and the page leaves out what it cannot show instead of failing."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
from sqlglot import exp

from mlsm_py.flow.readers import MONITORING, PUBLISHED
from mlsm_py.registry.schema import SCHEMA

# reason_1, reason_1_contribution, reason_1_text, ...: per-record explanations, when a build
# publishes them; shown in number order, the bare reason before its details.
REASON = re.compile(r"^reason_(\d+)(?:_(\w+))?$")
# Holdout metrics shown beside each fit, when the fit has them (rmse: regression models).
HOLDOUT = ("roc_auc", "pr_auc", "top_decile_capture", "lift_at_10", "log_loss", "brier", "rmse")
# Columns of a call list the leads table shows from winners and scores instead.
SHOWN_ELSEWHERE = {"score", "percentile", "decile", "winning_model", "winning_version"}
NO_SEGMENT = "(none)"  # records of unsegmented models, and with no level of their own


@contextlib.contextmanager
def reading(path: Path) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection to the copy, or None while no build has written one."""
    if not path.is_file():
        yield None
        return
    con = duckdb.connect(str(path), read_only=True)
    try:
        yield con
    finally:
        con.close()


@dataclass
class Filters:
    summary: str | None = None
    model: str | None = None  # None: every model
    segment: str | None = None  # None: every segment; NO_SEGMENT: unsegmented models' records
    rows: int = 50


@dataclass
class Page:
    """What one render shows, read in one go so the connection closes before drawing."""

    publication: dict | None
    leads: pd.DataFrame
    models: pd.DataFrame
    realised: pd.DataFrame
    decisions: pd.DataFrame
    scores_per_build: pd.DataFrame
    drift: pd.DataFrame
    histogram: pd.DataFrame
    builds: pd.DataFrame
    missing: list[str] = field(default_factory=list)  # tables the copy lacks


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
    return {f"{s}.{t}" for s, t in rows}


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"describe {exp.to_table(table).sql('duckdb')}").fetchall()]


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def options(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str], list[str]]:
    """(summary models, models, segments) the page can be filtered by: models that win a
    lead or hold an alias, segments of the records the champions scored."""
    have = tables(con)
    if f"{PUBLISHED}.winners" not in have:
        return [], [], []
    summaries = [r[0] for r in con.execute(q_distinct("summary_model")).fetchall()]
    models = {r[0] for r in con.execute(q_distinct("winning_model")).fetchall()}
    if f"{SCHEMA}.aliases" in have:
        models |= {r[0] for r in con.execute(f"select model_name from {SCHEMA}.aliases").fetchall()}
    segments: list[str] = []
    if f"{PUBLISHED}.scores" in have and "segment" in columns(con, f"{PUBLISHED}.scores"):
        levels = con.execute(
            f"select distinct segment from {PUBLISHED}.scores where role = 'champion' "
            "order by segment nulls first"
        ).fetchall()
        segments = [NO_SEGMENT if s is None else s for (s,) in levels]
    return summaries, sorted(models), segments


def q_distinct(col: str) -> str:
    return f"select distinct {col} from {PUBLISHED}.winners where {col} is not null order by {col}"


def publication(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The build the copy is of: the newest published row of the publication log."""
    if f"{SCHEMA}.builds" not in tables(con):
        return None
    row = con.execute(
        f"select run_id, finished_at, as_of, rows_scored, rows_new, actor from {SCHEMA}.builds "
        "where status = 'published' order by finished_at desc limit 1"
    ).fetchone()
    keys = ("run_id", "finished_at", "as_of", "rows_scored", "rows_new", "actor")
    return dict(zip(keys, row, strict=True)) if row else None


def reason_columns(cols: list[str]) -> list[str]:
    found = [(REASON.match(c), c) for c in cols]
    order = {None: 0, "contribution": 1, "text": 2}
    picked = [(int(m.group(1)), order.get(m.group(2), 3), c) for m, c in found if m]
    return [c for *_, c in sorted(picked)]


def top_leads(
    con: duckdb.DuckDBPyConnection, key: str, call_list: str | None, f: Filters
) -> pd.DataFrame:
    """The first `f.rows` leads of a summary model: its call list's order when it has one
    (else percentile, then score, as the default call order), with the winning model and arm,
    score, percentile, decile, the record's segment, reason codes where a published table
    carries them, and the call list's own columns."""
    have = tables(con)
    if f"{PUBLISHED}.winners" not in have:
        return pd.DataFrame()
    col = lambda t, c: exp.column(exp.to_identifier(c, quoted=True), table=t)  # noqa: E731
    is_ = lambda c, v: exp.EQ(this=c, expression=exp.Literal.string(v))  # noqa: E731
    win_cols = columns(con, f"{PUBLISHED}.winners")
    listed = call_list is not None and f"{PUBLISHED}.{call_list}" in have
    list_cols = columns(con, f"{PUBLISHED}.{call_list}") if listed else []
    scored = f"{PUBLISHED}.scores" in have
    score_cols = columns(con, f"{PUBLISHED}.scores") if scored else []

    picked: list[exp.Expression] = []
    if listed:
        picked.append(col("c", "call_rank"))
    picked += [col("w", key), col("w", "winning_model")]
    picked += [col("w", c) for c in ("arm", "score", "percentile", "decile") if c in win_cols]
    picked += [col("s", c) for c in ("segment", "fallback") if c in score_cols]
    # Reasons from the first table that carries them: the call list is what sales reads.
    for alias, cols in (("c", list_cols), ("w", win_cols), ("s", score_cols)):
        if reason_columns(cols):
            picked += [col(alias, c) for c in reason_columns(cols)]
            break
    skip = {key, "call_rank", "run_id", "winning_fit_id", *SHOWN_ELSEWHERE}
    picked += [col("c", c) for c in list_cols if c not in skip and not REASON.match(c)]

    q = exp.select(*picked).from_(exp.to_table(f"{PUBLISHED}.winners").as_("w"))
    if listed:
        q = q.join(
            exp.to_table(f"{PUBLISHED}.{call_list}").as_("c"),
            on=exp.EQ(this=col("c", key), expression=col("w", key)),
            join_type="left",
        )
    if scored:
        # The winner's own row: the champion of the winning model scored the record.
        on = exp.and_(
            exp.EQ(this=col("s", key), expression=col("w", key)),
            exp.EQ(this=col("s", "model_name"), expression=col("w", "winning_model")),
            is_(col("s", "role"), "champion"),
        )
        q = q.join(exp.to_table(f"{PUBLISHED}.scores").as_("s"), on=on, join_type="left")
    q = q.where(col("w", "winning_model").is_(exp.null()).not_())
    if f.summary is not None:
        q = q.where(is_(col("w", "summary_model"), f.summary))
    if f.model is not None:
        q = q.where(is_(col("w", "winning_model"), f.model))
    if f.segment is not None and "segment" in score_cols:
        seg = col("s", "segment")
        q = q.where(seg.is_(exp.null()) if f.segment == NO_SEGMENT else is_(seg, f.segment))
    if listed:
        q = q.order_by(exp.Ordered(this=col("c", "call_rank"), nulls_first=False))
    else:
        by = [c for c in ("percentile", "score") if c in win_cols]
        q = q.order_by(
            *(exp.Ordered(this=col("w", c), desc=True, nulls_first=False) for c in by),
            exp.Ordered(this=col("w", key)),
        )
    return _frame(con, q.limit(f.rows).sql("duckdb"))


def models(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Champion and challenger of every model and segment, side by side: the fit, its holdout
    metrics, and its realised metrics once outcomes arrived (records-weighted over cohorts:
    the per-cohort figures are on the realised chart)."""
    have = tables(con)
    if not {f"{SCHEMA}.aliases", f"{SCHEMA}.fits", f"{SCHEMA}.fit_metrics"} <= have:
        return pd.DataFrame()
    pivot = ",\n".join(f"max(value) filter (where metric = '{m}') as holdout_{m}" for m in HOLDOUT)
    realised = f"{MONITORING}.realised_performance" in have
    with_realised = (
        ", realised as (select fit_id, role, sum(records) as realised_records, "
        "sum(positives) as realised_positives, "
        "sum(roc_auc * records) / nullif(sum(records) filter (where roc_auc is not null), 0) "
        "as realised_roc_auc, sum(capture_at_10 * records) / nullif(sum(records) "
        "filter (where capture_at_10 is not null), 0) as realised_capture_at_10 "
        f"from {MONITORING}.realised_performance group by fit_id, role)"
        if realised
        else ""
    )
    df = _frame(
        con,
        f"with metrics as (select fit_id, {pivot} from {SCHEMA}.fit_metrics group by fit_id)"
        f"{with_realised}\n"
        "select a.model_name as model, coalesce(a.segment, '') as segment, a.alias as role, "
        "a.fit_id, f.model_version as version, f.estimator, f.route, f.trained_at, "
        "f.train_rows, f.holdout_rows, m.* exclude (fit_id)"
        + (", r.* exclude (fit_id, role)" if realised else "")
        + ", a.since as role_since, a.set_by\n"
        f"from {SCHEMA}.aliases a join {SCHEMA}.fits f using (fit_id) "
        "left join metrics m using (fit_id) "
        + ("left join realised r on r.fit_id = a.fit_id and r.role = a.alias " if realised else "")
        + "order by model, a.segment nulls first, a.alias",
    )
    return df.dropna(axis="columns", how="all")


def _optional(con, table: str, sql: str) -> pd.DataFrame:
    return _frame(con, sql) if table in tables(con) else pd.DataFrame()


def load(con: duckdb.DuckDBPyConnection, key: str, call_list: str | None, f: Filters) -> Page:
    have = tables(con)
    wanted = [
        f"{PUBLISHED}.winners",
        f"{SCHEMA}.aliases",
        f"{SCHEMA}.decisions",
        f"{MONITORING}.score_distribution",
        f"{MONITORING}.input_drift_history",
        f"{MONITORING}.realised_performance",
    ]
    hist = (
        f"with s as (select model_name as model, score from {PUBLISHED}.scores "
        "where role = 'champion' and score is not null), "
        "r as (select min(score) as lo, max(score) as hi from s), "
        "b as (select model, least(floor((score - lo) / nullif(hi - lo, 0) * 20), 19) as bin, "
        "lo, hi from s, r) "
        "select model, lo + (coalesce(bin, 0) + 0.5) * (hi - lo) / 20 as score, "
        "count(*) / sum(count(*)) over (partition by model) as share "
        "from b group by model, bin, lo, hi order by model, score"
    )
    return Page(
        publication=publication(con),
        leads=top_leads(con, key, call_list, f),
        models=models(con),
        realised=_optional(
            con,
            f"{MONITORING}.realised_performance",
            # A segmented model has a fit per segment in each cohort: one series each.
            "select r.cohort, r.model_name as model, r.role, r.fit_id, "
            "coalesce(f.segment, '') as segment, r.records, r.positives, r.roc_auc, "
            "r.capture_at_10, r.mean_score, r.observed_rate "
            f"from {MONITORING}.realised_performance r left join {SCHEMA}.fits f using (fit_id) "
            "order by cohort, model, role, segment",
        ),
        decisions=_optional(
            con,
            f"{SCHEMA}.decisions",
            "select decided_at, model_name as model, coalesce(segment, '') as segment, action, "
            "outcome, actor, from_fit, to_fit, reason from "
            f"{SCHEMA}.decisions order by decided_at desc limit 500",
        ),
        scores_per_build=_optional(
            con,
            f"{MONITORING}.score_distribution",
            "select built_at, model_name as model, role, fit_id, rows_checked, mean_score, "
            f"psi, null_share, level, build_status from {MONITORING}.score_distribution "
            "order by built_at, model, role",
        ),
        drift=_optional(
            con,
            f"{MONITORING}.input_drift_history",
            "select built_at, model_name as model, column_name as input, kind, rows_checked, "
            f"psi, unseen_share, level, build_status from {MONITORING}.input_drift_history "
            "order by built_at, model, input",
        ),
        histogram=_optional(con, f"{PUBLISHED}.scores", hist),
        builds=_optional(
            con,
            f"{SCHEMA}.builds",
            "select finished_at, run_id, command, actor, status, rows_scored, rows_new, "
            f"failed_checks from {SCHEMA}.builds order by started_at desc limit 20",
        ),
        missing=[t for t in wanted if t not in have],
    )

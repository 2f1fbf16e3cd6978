"""Summary models evaluated like models: each summary's rule applied, in Python exactly as the
SQL applies it, to its members' champions on the newest matured rows, next to every member,
recorded in `mlsm_registry.summary_metrics`, with a warning when it loses to its best member."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from mlsm_py import segments
from mlsm_py.dbt import writer
from mlsm_py.estimator import input_types, score_vector
from mlsm_py.flow.session import Overlay, Session, scored_fits
from mlsm_py.frames import model_frame
from mlsm_py.registry import artifacts, store
from mlsm_py.registry.schema import SCHEMA
from mlsm_py.spec import SummaryModel
from mlsm_py.train.metrics import evaluate
from mlsm_py.train.split import SplitBounds, bounds
from mlsm_py.train.summary import Bands, pick, place, ranking_metrics
from mlsm_py.train.trainer import newest, read_window

METRICS = ("roc_auc", "top_decile_capture")


@dataclass
class SummaryReport:
    summary: SummaryModel
    rows: int
    window: SplitBounds
    metrics: dict[str, float]
    members: dict[str, dict[str, float]]  # member -> metrics, in rank order
    fits: dict[str, str] = field(default_factory=dict)

    def best_member(self) -> str:
        return max(
            self.members,
            key=lambda m: _num(self.members[m]["roc_auc"]),
        )

    def loses(self) -> list[str]:
        """What the summary loses on against its best member (by ROC AUC), if anything."""
        best = self.members[self.best_member()]
        return [k for k in METRICS if _num(self.metrics[k]) < _num(best[k]) - 1e-9]

    def warning(self) -> str | None:
        lost = self.loses()
        # An A/B split gives a share of records to the weaker arm on purpose.
        if not lost or self.summary.split is not None:
            return None
        best = self.best_member()
        what = ", ".join(
            f"{_label(k)} {_fmt(k, self.metrics[k])} vs {_fmt(k, self.members[best][k])}"
            for k in lost
        )
        return (
            f"warning: summary model {self.summary.name} (rule {self.summary.rule}) loses to "
            f"its best member {best}: {what}"
        )


def _num(v: float) -> float:
    return -math.inf if v is None or math.isnan(v) else v


def _label(k: str) -> str:
    return {"roc_auc": "ROC AUC", "top_decile_capture": "top-10% capture"}[k]


def _fmt(k: str, v: float) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:.1%}" if k == "top_decile_capture" else f"{v:.4f}"


def with_routed_metrics(
    s: Session, con: duckdb.DuckDBPyConnection, scored: list[writer.Scored]
) -> list[writer.Scored]:
    """Give each segmented best_member candidate's global champion the metrics of the model
    as routed: on the global fit's own holdout window (from the registry, so the ranking is
    a function of the registry), each row scored by its segment's champion or the fallback.
    Comparing a member by its global fit alone would rank a model the build never runs."""
    members = {n for x in s.defs.summaries if x.rule == "best_member" for n in x.models}
    groups: dict[str, list[writer.Scored]] = {}
    for x in scored:
        if x.alias == store.CHAMPION and x.model.segments and x.model.name in members:
            groups.setdefault(x.model.name, []).append(x)
    out = list(scored)
    for fits in groups.values():
        fits.sort(key=lambda f: f.segment is not None)
        glob = fits[0]
        if glob.segment is not None or len(fits) == 1:
            continue
        m, row = glob.model, glob.fit
        df = read_window(con, m, row["holdout_from"], row["matured_until"], inclusive_end=True)
        score, _ = routed(s, con, fits, df)
        metrics = evaluate(df[m.target].to_numpy(dtype="float64"), score, row["task"])
        out[out.index(glob)] = dataclasses.replace(glob, metrics={**glob.metrics, **metrics})
    return out


def member_scores(
    s: Session, con: duckdb.DuckDBPyConnection, fits: list[writer.Scored], b: SplitBounds
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(score, percentile, label) by key for one member's champion on the window; a segmented
    member's records are scored by their segment's fit, as the build routes them."""
    m = fits[0].model
    df = read_window(con, m, b.holdout_from, b.matured_until, inclusive_end=True)
    score, pct = routed(s, con, fits, df)
    keys = df[m.key].to_numpy()
    return (
        pd.Series(score, index=keys),
        pd.Series(pct, index=keys),
        pd.Series(df[m.target].to_numpy(dtype="float64"), index=keys),
    )


def routed(
    s: Session, con: duckdb.DuckDBPyConnection, fits: list[writer.Scored], df: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Score and percentile of each row of `df` by the fit the build routes it to: its
    segment's fit where `fits` has one, else the global fit (`fits` without a segment)."""
    m = fits[0].model
    X = model_frame(df, input_types(m.fields))
    score = np.full(len(df), np.nan)
    pct = np.full(len(df), np.nan)
    left = np.ones(len(df), dtype=bool)
    if m.segments:
        level = segments.labels(df, m).to_numpy()
        for f in fits:
            if f.segment is not None:
                rows = level == f.segment
                left &= ~rows
                _score_into(s, con, f, X, rows, score, pct)
    for f in fits:
        if f.segment is None:
            _score_into(s, con, f, X, left, score, pct)
    return score, pct


def _score_into(s, con, f: writer.Scored, X, rows, score, pct) -> None:
    if not rows.any():
        return
    est = artifacts.load(
        artifacts.resolve(s.project.state, f.fit["artifact_path"]), f.fit["artifact_sha256"]
    )
    got = score_vector(est, X[rows]).astype("float64")
    points = store.breakpoints(con, f.fit["fit_id"])
    score[rows] = got
    pct[rows] = place(got, Bands.of(points)) if points else np.nan


def evaluate_summaries(
    s: Session, con: duckdb.DuckDBPyConnection, overlay: Overlay | None = None
) -> list[SummaryReport]:
    """Every summary with a trained member, on its first member's newest matured rows."""
    scored = with_routed_metrics(s, con, scored_fits(con, s.defs, overlay))
    champions: dict[str, list[writer.Scored]] = {}
    for x in sorted(scored, key=lambda x: x.segment is not None):  # global fit first
        if x.alias == store.CHAMPION:
            champions.setdefault(x.model.name, []).append(x)
    out = []
    for summary, cands in writer.candidates(s.defs, scored):
        order = [n for n, _ in cands]
        first = champions[order[0]][0].model
        b = bounds(newest(con, first), first.split)
        parts = {n: member_scores(s, con, champions[n], b) for n in order}
        keys = sorted(set.intersection(*(set(p[0].index) for p in parts.values())))
        if not keys:
            continue
        y = parts[order[0]][2].loc[keys].to_numpy()
        scores = {n: parts[n][0].loc[keys].to_numpy() for n in order}
        pcts = {n: parts[n][1].loc[keys].to_numpy() for n in order}
        if summary.split is not None:
            arm = np.array([summary.split.arm_of(k) for k in keys])
            scores = {n: np.where(arm == n, v, np.nan) for n, v in scores.items()}
            got = pick("highest_score", order, scores, pcts)
            value = got.order_value("highest_percentile")
        else:
            got = pick(summary.rule, order, scores, pcts)
            value = got.order_value(summary.rule)
        members = {n: ranking_metrics(y, parts[n][0].loc[keys].to_numpy()) for n in order}
        out.append(
            SummaryReport(
                summary,
                len(keys),
                b,
                ranking_metrics(y, value),
                members,
                {n: champions[n][0].fit["fit_id"] for n in order},
            )
        )
    return out


def record(
    con: duckdb.DuckDBPyConnection,
    reports: list[SummaryReport],
    run_id: str | None,
    sample: str = "holdout",
) -> None:
    """One evaluation per report in summary_metrics: the summary's rows and each member's."""
    when = store.now()
    rows = []
    for r in reports:
        eid = store.new_id()
        who = [(None, None, r.metrics)] + [(m, r.fits.get(m), v) for m, v in r.members.items()]
        for member, fit_id, metrics in who:
            for metric, value in sorted(metrics.items()):
                rows.append(
                    [
                        eid,
                        when,
                        run_id,
                        r.summary.name,
                        r.summary.rule,
                        sample,
                        r.window.holdout_from,
                        r.window.matured_until,
                        member,
                        fit_id,
                        metric,
                        None if value is None or math.isnan(value) else float(value),
                    ]
                )
    if rows:
        con.executemany(
            f"insert into {SCHEMA}.summary_metrics values ({', '.join('?' * 12)})", rows
        )


def table(r: SummaryReport, sample: str = "holdout") -> list[str]:
    """A small table: the summary, then each member in rank order."""
    what = "holdout rows" if sample == "holdout" else "records with a realised outcome"
    span = "" if sample == "holdout" else "first published "
    head = (
        f"  {r.summary.name} (rule {r.summary.rule}) on {r.rows:,} {what} "
        f"({span}{r.window.holdout_from:%Y-%m-%d} to {r.window.matured_until:%Y-%m-%d}):"
    )
    lines = [head, f"    {'':<20} {'ROC AUC':>8} {'top-10%':>8}"]
    for name, m in [(r.summary.name, r.metrics), *r.members.items()]:
        lines.append(
            f"    {name:<20} {_fmt('roc_auc', m['roc_auc']):>8} "
            f"{_fmt('top_decile_capture', m['top_decile_capture']):>8}"
        )
    return lines


def report(
    s: Session,
    con: duckdb.DuckDBPyConnection,
    overlay: Overlay | None = None,
    run_id: str | None = None,
    sample: str = "holdout",
) -> list[SummaryReport]:
    """Evaluate, record and print every summary; warn where one loses to its best member."""
    reports = evaluate_summaries(s, con, overlay) if sample == "holdout" else realised(s, con)
    with store.transaction(con):
        record(con, reports, run_id, sample)
    for r in reports:
        for line in table(r, sample):
            s.say(line)
        w = r.warning()
        if w:
            s.say(f"  {w}")
    return reports


def realised(s: Session, con: duckdb.DuckDBPyConnection) -> list[SummaryReport]:
    """Every summary on the records whose outcome has arrived since they were first published:
    their first published winner (history.winners) and each member's first champion score
    (history.scores), against the outcome the features relation now holds."""
    from mlsm_py.flow.history import HISTORY

    if not store.table_exists(con, HISTORY, "winners"):
        return []
    out = []
    by_name = {m.name: m for m in s.defs.models}
    for summary in s.defs.summaries:
        first = by_name[summary.models[0]]
        k, t = first.key, first.target
        q = (
            f"select w.{k} as k, w.score, w.percentile, f.{t} as y, w.published_at "
            f"from {HISTORY}.winners w join {first.features} f on f.{k} = w.{k} "
            f"where w.summary_model = ? and f.{t} is not null "
            f"qualify row_number() over (partition by w.{k} order by w.published_at) = 1 "
            f"order by w.{k}"
        )
        won = con.execute(q, [summary.name]).df()
        if won.empty:
            continue
        members = {}
        for name in summary.models:
            q = (
                f"select {k} as k, score from {HISTORY}.scores where model_name = ? "
                f"and role = 'champion' and model_status = 'live' "
                f"qualify row_number() over (partition by {k} order by published_at) = 1"
            )
            got = con.execute(q, [name]).df().set_index("k")["score"]
            if len(got):
                v = got.reindex(won["k"]).to_numpy(dtype="float64")
                members[name] = ranking_metrics(won["y"].to_numpy(), v)
        if not members:
            continue
        rule = "highest_percentile" if summary.split is not None else summary.rule
        from mlsm_py.train.summary import Picked

        picked = Picked(
            np.zeros(len(won), dtype=int),
            won["score"].to_numpy(dtype="float64"),
            won["percentile"].to_numpy(dtype="float64"),
        )
        window = SplitBounds(
            won["published_at"].max(),
            won["published_at"].max(),
            won["published_at"].min(),
            won["published_at"].min(),
        )
        out.append(
            SummaryReport(
                summary,
                len(won),
                window,
                ranking_metrics(won["y"].to_numpy(), picked.order_value(rule)),
                members,
            )
        )
    return out

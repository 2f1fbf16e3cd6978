"""The report: per model, the champion (and challenger) on the newest matured rows -- ROC and
capture curves, calibration, the stored metrics -- then its scores and inputs over the builds,
and the champion against the challenger. One HTML file, no script and no network: the plots
are inline SVG, the numbers are tables beside them."""

from __future__ import annotations

import html
import os
from pathlib import Path

import duckdb
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from mlsm_py.flow.evaluate import member_scores
from mlsm_py.flow.session import Session, scored_fits
from mlsm_py.registry import store
from mlsm_py.registry.schema import SCHEMA
from mlsm_py.report import plots
from mlsm_py.train.split import bounds
from mlsm_py.train.trainer import newest

SHOWN = ("roc_auc", "pr_auc", "log_loss", "brier", "capture_at_10", "lift_at_10", "rows")
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.plot { border: 1px solid #eee; padding: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.warn { background: #fff3cd; } .error { background: #f8d7da; }
"""


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4f}"
    return html.escape(str(v))


def _table(head: list[str], rows: list[list], classes: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>")
    return "\n".join(out) + "</table>"


def _plot(svg: str) -> str:
    return f'<div class="plot">{svg}</div>'


def _holdout_section(s: Session, con, fits: dict) -> tuple[list[str], list[str]]:
    """Curves and tables on the newest matured rows, for the model's champion and challenger."""
    first = next(iter(fits.values()))[0].model
    b = bounds(newest(con, first), first.split)
    roc, cap, cal, metrics = {}, {}, {}, []
    for role, scored in fits.items():
        score, _, y = member_scores(s, con, scored, b)
        y, score = y.to_numpy(), score.to_numpy()
        fpr, tpr, _ = roc_curve(y, score)
        fit_id = scored[0].fit["fit_id"]  # a segmented model: its global fit's tables
        m = store.fit_metrics(con, fit_id)
        roc[role] = (fpr, tpr, float(roc_auc_score(y, score)))
        order = np.argsort(-score, kind="stable")
        cap[role] = (np.arange(1, len(y) + 1) / len(y), np.cumsum(y[order]) / max(y.sum(), 1))
        cal[role] = store.select_rows(
            con,
            f"select rows, mean_score, observed_rate from {SCHEMA}.fit_bins where fit_id = ? "
            "and table_name = 'calibration' order by bin",
            [fit_id],
        )
        extra = f" + {len(scored) - 1} segment fits" if len(scored) > 1 else ""
        label = f"{role} {fit_id}{extra}"
        metrics.append([label, *(m.get(k) for k in SHOWN)])
    plots_html = [_plot(plots.roc(roc)), _plot(plots.capture(cap))]
    if any(cal.values()):
        plots_html.append(_plot(plots.calibration(cal)))
    tables = [
        f"<p>Curves: the newest matured rows now ({b.holdout_from:%Y-%m-%d} to "
        f"{b.matured_until:%Y-%m-%d}). Table and calibration: each fit's own holdout, "
        "stored at training.</p>",
        _table(["fit", *SHOWN], metrics),
    ]
    return plots_html, tables


def _history_section(con, model: str) -> tuple[list[str], list[str]]:
    out_plots, out_tables = [], []
    if store.table_exists(con, "history", "score_checks"):
        rows = store.select_rows(
            con,
            "select run_id, role, mean_score, psi, level, build_status from history.score_checks "
            "where model_name = ? order by built_at",
            [model],
        )
        runs = list(dict.fromkeys(r["run_id"] for r in rows))
        if runs:
            series = {}
            for role in sorted({r["role"] for r in rows}):
                by_run = {r["run_id"]: r["mean_score"] for r in rows if r["role"] == role}
                series[f"{role} mean score"] = [by_run.get(run, np.nan) for run in runs]
            out_plots.append(_plot(plots.over_time(runs, series, "Scores per build", "mean")))
            out_tables.append(
                _table(
                    ["build", "role", "mean score", "PSI vs holdout", "level", "build"],
                    [
                        [
                            r["run_id"][:8],
                            r["role"],
                            r["mean_score"],
                            r["psi"],
                            r["level"],
                            r["build_status"],
                        ]
                        for r in rows[-8:]
                    ],
                    [r["level"] if r["level"] in ("warn", "error") else "" for r in rows[-8:]],
                )
            )
    if store.table_exists(con, "history", "input_drift"):
        rows = store.select_rows(
            con,
            "select run_id, column_name, psi, level from history.input_drift "
            "where model_name = ? order by built_at, column_name",
            [model],
        )
        runs = list(dict.fromkeys(r["run_id"] for r in rows))
        cols = sorted({r["column_name"] for r in rows})
        if runs and cols:
            grid = np.full((len(cols), len(runs)), np.nan)
            for r in rows:
                if r["psi"] is not None:
                    grid[cols.index(r["column_name"]), runs.index(r["run_id"])] = r["psi"]
            out_plots.append(_plot(plots.heat_map(cols, runs, grid)))
            last = [r for r in rows if r["run_id"] == runs[-1]]
            out_tables.append(
                _table(
                    ["input (last build)", "PSI", "level"],
                    [[r["column_name"], r["psi"], r["level"]] for r in last],
                    [r["level"] if r["level"] in ("warn", "error") else "" for r in last],
                )
            )
    return out_plots, out_tables


def _versus_section(con, model: str, fits: dict) -> tuple[list[str], list[str]]:
    if len(fits) < 2:
        return [], []
    names = ["roc_auc", "capture_at_10"]
    groups = {}
    rows = []
    for role, scored in fits.items():
        fit_id = scored[0].fit["fit_id"]  # a segmented model: its global fit's tables
        m = store.fit_metrics(con, fit_id)
        groups[f"{role} (holdout)"] = [m.get(k, np.nan) for k in names]
        rows.append([f"{role} holdout", *(m.get(k) for k in names)])
    if store.table_exists(con, "monitoring", "champion_vs_challenger"):
        real = store.select_rows(
            con,
            "select role, sum(records) as records, avg(roc_auc) as roc_auc, "
            "avg(capture_at_10) as capture_at_10 from monitoring.champion_vs_challenger "
            "where model_name = ? group by role order by role",
            [model],
        )
        for r in real:
            groups[f"{r['role']} (realised)"] = [r["roc_auc"], r["capture_at_10"]]
            rows.append(
                [
                    f"{r['role']} realised ({r['records']:,} records)",
                    r["roc_auc"],
                    r["capture_at_10"],
                ]
            )
    return [_plot(plots.bars(names, groups, "Champion vs challenger"))], [
        _table(["", *names], rows)
    ]


def render(s: Session, con: duckdb.DuckDBPyConnection) -> str:
    scored = scored_fits(con, s.defs)
    by_model: dict[str, dict] = {}
    for x in sorted(scored, key=lambda x: x.segment is not None):  # the global fit first
        by_model.setdefault(x.model.name, {}).setdefault(x.alias, []).append(x)
    parts = [f"<h1>mlsm report: {html.escape(str(s.project.root.name))}</h1>"]
    last = store.select_rows(con, f"select * from {SCHEMA}.builds order by started_at desc limit 1")
    if last:
        b = last[0]
        parts.append(
            f"<p>Last build {html.escape(b['run_id'])}: {html.escape(b['status'])} at "
            f"{b['finished_at']:%Y-%m-%d %H:%M} UTC, data as of {b['as_of'] or '-'}, "
            f"{b['rows_scored'] or 0:,} records scored.</p>"
        )
    for name in sorted(by_model):
        fits = dict(sorted(by_model[name].items()))
        m = (
            fits[store.CHAMPION][0].model
            if store.CHAMPION in fits
            else next(iter(fits.values()))[0].model
        )
        parts.append(f"<h2>{html.escape(name)} v{m.version} ({m.status})</h2>")
        for section in (
            _holdout_section(s, con, fits),
            _history_section(con, name),
            _versus_section(con, name, fits),
        ):
            p, t = section
            if p or t:
                parts.append(
                    '<div class="row">' + "".join(p) + "<div>" + "".join(t) + "</div></div>"
                )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>mlsm report</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def write(s: Session, out: Path | None = None) -> Path:
    out = out or (s.project.root / "reports" / "mlsm-report.html")
    with s.registry() as con:
        text = render(s, con)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out

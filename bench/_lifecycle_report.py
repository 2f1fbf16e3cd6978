"""lifecycle.py's phase names and its plain-text report: formatting only, no timing."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
from typing import Any

DBT_FEATURES = "dbt: staging, features, input checks"
READ = "read: feature rows into pandas"
FIT = "fit: estimator.fit"
TRAIN = "train: contracts, model frames, metrics"
COMPILE = "compile: route, SQL render, artifact"
PARITY = "parity gate"
JUDGE = "judge: champion re-scored"
REGISTRY = "registry: artifacts, fits, decisions"
WRITE = "write: generated dbt files"
DBT = "dbt build: whole project"
PUBLISH = "publish: one transaction"
READERS = "readers: copy of the published tables"
OTHER = "other: lock, registry connections"
PHASES = [
    *(DBT_FEATURES, READ, FIT, TRAIN, COMPILE, PARITY, JUDGE, REGISTRY, WRITE, DBT, PUBLISH),
    READERS,
]
# How a daily build's dbt time splits (node categories from the manifest).
STARTUP = "dbt start-up: imports, parse, manifest (before the first node)"
FEATURE_MODELS = "staging view + lead_features table (all leads)"
INPUT_CHECKS = "input checks (raw, staging, features)"
REGISTRY_CHECKS = "registry checks"
SCORE_MODELS = "score models"
UNION = "union (scores) + winners"
SCORE_CHECKS = "score checks (incl. the winner unit test)"
IDLE = "dbt between nodes and wrap-up"
NODE_KINDS = [FEATURE_MODELS, INPUT_CHECKS, REGISTRY_CHECKS, SCORE_MODELS, UNION, SCORE_CHECKS]
# --population: what each mode scores, as the report words it.
SCORED_ROWS = {
    "open": "open leads (lead_features filtered by each model's population, as the generated "
    "models read it)",
    "all": "leads (every row of lead_features: the models' populations removed)",
}


def filters_text(filters: list[str | None]) -> str:
    return "models' filters " + ", ".join(repr(f) if f else "none" for f in filters)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def phase_table(cmds: dict[str, dict]) -> list[str]:
    head = f"{'phase (s)':<40}" + "".join(f"{c:>10}" for c in cmds)
    lines = [head, "-" * len(head)]
    for phase in [*PHASES, OTHER]:
        vals = [c["phases"].get(phase) for c in cmds.values()]
        if any(v is not None for v in vals):
            cells = [f"{v:>10.2f}" if v is not None else f"{'-':>10}" for v in vals]
            lines.append(f"{phase:<40}" + "".join(cells))
    return [*lines, f"{'total':<40}" + "".join(f"{c['total']:>10.2f}" for c in cmds.values())]


def daily_table(daily: dict, routes: list[dict], rows: int, mode: str) -> list[str]:
    nodes = {n["name"]: n for n in daily["dbt_runs"][-1][2]}
    scored = routes[0]["rows"]
    lines = [
        f"daily build vs the chosen routes over the same {scored:,} {SCORED_ROWS[mode]}",
        f"  {'score model':<32} {'route':<6} {'rows':>9} {'chosen s':>9} {'in dbt s':>9} "
        f"{'(compile':>9} {'execute)':>9} {'max|diff|':>9}",
    ]
    sums = [0.0, 0.0, 0.0, 0.0]
    for r in routes:
        n = nodes[r["name"]]
        vals = [r["seconds"], n["execution_time"], n["compile_s"], n["execute_s"]]
        sums = [a + b for a, b in zip(sums, vals, strict=True)]
        lines.append(
            f"  {r['name']:<32} {r['route']:<6} {r['rows']:>9,} "
            + " ".join(f"{v:>9.3f}" for v in vals)
            + f" {r['max_abs_diff_vs_dbt']:>9.1e}"
        )
    total, chosen = daily["total"], sums[0]
    lines += [
        f"  {'sum':<32} {'':<6} {'':>9} " + " ".join(f"{v:>9.3f}" for v in sums),
        f"daily build {total:.2f} s / sum of chosen routes {chosen:.3f} s = "
        f"{total / chosen:.1f}x (goal <= 1.5x)",
        "where the daily build's time goes (s; concurrent dbt nodes share the wall time):",
        *(f"  {name:<64} {secs:>7.2f}" for name, secs in daily["where"].items()),
        f"  {'total':<64} {total:>7.2f}",
    ]
    big = sorted(daily["where"].items(), key=lambda kv: -kv[1])[:4]
    parts = "; ".join(f"{re.split(r'[:(]', k)[0].strip()} {v:.1f} s" for k, v in big)
    return [
        *lines,
        f"summary: population {mode}: daily build of {rows:,} leads ({scored:,} scored per fit, "
        f"{len(routes)} fits) {total:.1f} s vs {chosen:.2f} s of chosen-route scoring = "
        f"{total / chosen:.1f}x (goal <= 1.5x); largest parts: {parts}",
    ]


def report(args: Any, res: dict, load_start: str, elapsed: float, threads: int) -> list[str]:
    """The whole plain-text report. `threads`: DuckDB's, as score_throughput sets them."""
    daily, routes, pop = res["cmds"]["daily"], res["routes"], res["population"]
    versions = ", ".join(
        f"{p} {md.version(p)}" for p in ("duckdb", "dbt-core", "dbt-duckdb", "scikit-learn")
    )
    return [
        f"mlsm lifecycle: {args.rows:,} leads; population {pop['mode']} "
        f"({filters_text(pop['filters'])}): {routes[0]['rows']:,} leads scored per fit; "
        f"best of {args.runs} for the daily build and the routes",
        f"{versions}, python {platform.python_version()}; {os.cpu_count()} cores; dbt threads "
        f"{args.dbt_threads or 2}, DuckDB threads {threads}",
        f"load average (1/5/15 min): start {load_start}, before the daily builds "
        f"{res['load_before_daily']}, end {loadavg()}",
        f"data: generate + load {res['load_s']:.1f} s, fresh data {res['reload_s']:.1f} s; "
        f"retrain: {', '.join(res['outcomes'])}; daily builds "
        + ", ".join(f"{t:.2f}" for t in res["dailies"])
        + " s",
        *phase_table(res["cmds"]),
        *daily_table(daily, routes, args.rows, pop["mode"]),
        f"total runtime {elapsed:.0f} s",
    ]

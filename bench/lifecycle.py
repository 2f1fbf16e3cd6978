"""The model lifecycle, timed: `mlsm train`, `mlsm build`, `mlsm retrain` and a daily `mlsm build`
on a throw-away project (a copy of dbt_project/ and macros/ in a temporary directory or
--workdir, the demo definitions, its own warehouse), and the daily build set against the
scoring work inside it:

  1. generate_leads(N) into raw.leads; `mlsm train`; `mlsm build`;
  2. generate_leads(N, --retrain-seed) (fresh data); `mlsm retrain`;
  3. --runs times, interleaved so machine load hits both alike: a daily `mlsm build`, then every
     fit it scores (champions and challengers) on its chosen route as score_throughput.py runs
     it (registered SQL as CREATE TABLE AS; pyscore.score_relation + Arrow write-back) over the
     same population rows of the same lead_features, checked equal to dbt's table.

The lifecycle code reports no phase times: this script wraps the functions it calls (in this
process only) and books each call's time, minus wrapped calls inside it, to a phase. dbt node
times come from target/run_results.json; nodes running at once on dbt's two threads share the
wall time. Timings are for reading, never for asserting.

    python bench/lifecycle.py --rows 1000000 [--runs 2] [--seed 42] [--retrain-seed 43]
        [--workdir DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import score_throughput as st
from sqlglot import exp

import models_py
from mlsm_py.dbt import runner
from mlsm_py.demo.data import generate_leads, load_leads
from mlsm_py.flow import build as build_flow
from mlsm_py.flow import compiled, lifecycle
from mlsm_py.flow.session import Session, scored_fits
from mlsm_py.project import Project
from mlsm_py.registry import artifacts
from mlsm_py.train import trainer

ROOT = st.ROOT
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
OTHER = "other: lock, registry connections"
PHASES = [DBT_FEATURES, READ, FIT, TRAIN, COMPILE, PARITY, JUDGE, REGISTRY, WRITE, DBT, PUBLISH]
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


# -- phase times ------------------------------------------------------------------------------
@dataclass
class DbtRun:
    started: float  # epoch seconds, as run_results.json's timestamps
    finished: float
    nodes: list[dict]  # unique_id, kind, status, execution_time, start, end


@dataclass
class Recorder:
    """Exclusive time per phase: a wrapped call inside another is booked to its own phase."""

    phases: dict[str, float] = field(default_factory=dict)
    dbt_runs: list[DbtRun] = field(default_factory=list)
    _stack: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.phases, self.dbt_runs = {}, []

    def call(self, phase: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._stack.append(0.0)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - t0
            inner = self._stack.pop()
            self.phases[phase] = self.phases.get(phase, 0.0) + elapsed - inner
            if self._stack:
                self._stack[-1] += elapsed


REC = Recorder()


def _wrap(owner: Any, name: str, phase: str, undo: list) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return REC.call(phase, fn, *args, **kwargs)

    setattr(owner, name, wrapper)
    undo.append((owner, name, fn))


def _timed_clone(clone: Callable[..., Any]) -> Callable[..., Any]:
    """trainer.train fits `clone(model.estimator)`: time that estimator's own fit. The timing
    shim is an instance attribute, removed before fitting so the saved artifact never has it."""

    def wrapped(est: Any, *args: Any, **kwargs: Any) -> Any:
        c = clone(est, *args, **kwargs)
        fit = c.fit

        def timed_fit(*a: Any, **k: Any) -> Any:
            del c.fit
            return REC.call(FIT, fit, *a, **k)

        c.fit = timed_fit
        return c

    return wrapped


def _timed_dbt(build: Callable[..., Any]) -> Callable[..., Any]:
    """runner.build: the features-only build (a selection) and the whole build are two phases;
    after each, dbt's run_results.json is read for the node timings."""

    @functools.wraps(build)
    def wrapped(ctx: runner.DbtContext, select: Any = None, variables: Any = None) -> Any:
        t0 = time.time()
        out = REC.call(DBT_FEATURES if select else DBT, build, ctx, select, variables)
        REC.dbt_runs.append(DbtRun(t0, time.time(), dbt_nodes(ctx.dbt_dir / "target")))
        return out

    return wrapped


# Where the lifecycle code looks each name up (a `from x import f` copy is patched where used).
WRAPPED = [
    (trainer, "read_window", READ),
    (lifecycle, "train", TRAIN),
    (lifecycle, "compile_fit", COMPILE),
    (compiled, "check_parity", PARITY),
    (compiled, "check_parity_python", PARITY),
    (lifecycle, "_decide", JUDGE),
    (lifecycle, "_register_trained", REGISTRY),
    (lifecycle, "_stage", REGISTRY),
    (lifecycle, "sync_files", WRITE),
    (build_flow, "sync_files", WRITE),
    (build_flow, "publish", PUBLISH),
]


def instrument() -> list:
    undo: list = []
    for owner, name, phase in WRAPPED:
        _wrap(owner, name, phase, undo)
    for owner, name, make in ((trainer, "clone", _timed_clone), (runner, "build", _timed_dbt)):
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, make(getattr(owner, name)))
    return undo


# -- dbt node timings -------------------------------------------------------------------------
def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _model_kind(name: str) -> str | None:
    if name.startswith("score__"):
        return SCORE_MODELS
    return UNION if name in ("scores", "winners") else None


def _kind(uid: str, manifest: dict) -> str:
    nodes = manifest.get("nodes", {})
    node = nodes.get(uid) or manifest.get("unit_tests", {}).get(uid) or {}
    resource = uid.split(".", 1)[0]
    if resource == "unit_test":
        return SCORE_CHECKS
    if resource == "model":
        return _model_kind(node.get("name", "")) or FEATURE_MODELS
    deps = node.get("depends_on", {}).get("nodes", [])
    if any(_model_kind(nodes.get(d, {}).get("name", "")) for d in deps):
        return SCORE_CHECKS
    if any(d.startswith("source.") and ".mlsm_registry." in d for d in deps):
        return REGISTRY_CHECKS
    return INPUT_CHECKS


def dbt_nodes(target: Path) -> list[dict]:
    """Each node dbt ran: its kind, start and end (epoch s), and its compile and execute time."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    manifest = json.loads((target / "manifest.json").read_text())
    out = []
    for r in results:
        spans = {t["name"]: t for t in r.get("timing", []) if t.get("started_at")}
        if not spans:
            continue  # skipped: never ran
        secs = {k: _epoch(t["completed_at"]) - _epoch(t["started_at"]) for k, t in spans.items()}
        out.append(
            {
                "name": r["unique_id"].split(".")[2],
                "unique_id": r["unique_id"],
                "kind": _kind(r["unique_id"], manifest),
                "status": r["status"],
                "execution_time": r["execution_time"],
                "compile_s": secs.get("compile", 0.0),
                "execute_s": secs.get("execute", 0.0),
                "start": min(_epoch(t["started_at"]) for t in spans.values()),
                "end": max(_epoch(t["completed_at"]) for t in spans.values()),
            }
        )
    return out


def dbt_breakdown(run: DbtRun) -> dict[str, float]:
    """The dbt wall time split: start-up, each node kind's share (nodes running at the same
    time split the interval equally), and the rest (between nodes, wrap-up)."""
    out = dict.fromkeys([STARTUP, *NODE_KINDS, IDLE], 0.0)
    if not run.nodes:
        out[STARTUP] = run.finished - run.started
        return out
    first = min(n["start"] for n in run.nodes)
    out[STARTUP] = first - run.started
    points = sorted({t for n in run.nodes for t in (n["start"], n["end"])})
    busy = 0.0
    for a, b in zip(points, points[1:], strict=False):
        live = [n["kind"] for n in run.nodes if n["start"] <= a and n["end"] >= b]
        for kind in live:
            out[kind] += (b - a) / len(live)
        busy += (b - a) if live else 0.0
    out[IDLE] = run.finished - first - busy
    return out


# -- the project ------------------------------------------------------------------------------
def make_project(root: Path, dbt_threads: int | None) -> Session:
    ignore = shutil.ignore_patterns("target", "logs", "dbt_packages", "package-lock.yml")
    for name in ("dbt_project", "macros"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    if dbt_threads is not None:  # the copy's profile only
        profile = root / "dbt_project" / "profiles.yml"
        text, n = re.subn(r"threads: \d+", f"threads: {dbt_threads}", profile.read_text())
        assert n == 1, f"{profile}: no single `threads:` setting to change"
        profile.write_text(text)
    warehouse = root / "warehouse" / "mlsm.duckdb"
    warehouse.parent.mkdir(parents=True)
    # The demo's definitions as imported here, not from `root` (which holds no models_py).
    p = Project(root, "models_py:PROJECT", root / "dbt_project", warehouse)
    p._definitions = models_py.PROJECT
    return Session(p, say=lambda m: st.say(f"    {m}"), actor="bench")


def load(s: Session, rows: int, seed: int) -> float:
    table, gen_s = st.timed(lambda: generate_leads(rows, seed))
    con = duckdb.connect(str(s.project.warehouse))
    try:
        _, load_s = st.timed(lambda: load_leads(con, table))
    finally:
        con.close()
    st.say(f"  generated {rows:,} leads (seed {seed}) in {gen_s:.1f} s, loaded in {load_s:.1f} s")
    return gen_s + load_s


def command(name: str, fn: Callable[[], Any]) -> dict:
    st.say(f"mlsm {name}")
    REC.reset()
    out, total = st.timed(fn)
    phases = dict(REC.phases)
    phases[OTHER] = total - sum(phases.values())
    return {"total": total, "phases": phases, "dbt_runs": REC.dbt_runs, "result": out}


# -- the chosen routes, outside dbt -----------------------------------------------------------
def population(m: Any) -> exp.Select:
    q = exp.select(exp.Star()).from_(exp.to_table(m.features))
    return q.where(m.population) if m.population else q


def registered_select(fit: dict, m: Any) -> str:
    """The registered scoring SQL over the model's population, as dbt runs it: the fit's dbt
    body with the relation placeholder filled and its Jinja escapes of braces undone."""
    body = re.sub(r"\{\{ '([{}])' \}\}", r"\1", fit["dbt_sql"])
    assert body.count(compiled.RELATION) == 1
    return body.replace(compiled.RELATION, population(m).subquery("population").sql("duckdb"))


def diff_vs_dbt(raw: Any, table: str, dbt_table: str, key: str) -> tuple[float, int, int]:
    a, b = exp.column("score", table="a"), exp.column("score", table="b")
    diff = exp.func("max", exp.Abs(this=exp.Sub(this=a, expression=b)))
    q = (
        exp.select(diff, exp.Count(this=exp.Star()))
        .from_(exp.to_table(table).as_("a"))
        .join(exp.to_table(dbt_table).as_("b"), using=[key])
    )
    worst, matched = raw.execute(q.sql("duckdb")).fetchone()
    count = exp.select(exp.Count(this=exp.Star())).from_(exp.to_table(dbt_table))
    return float(worst or 0.0), matched, raw.execute(count.sql("duckdb")).fetchone()[0]


def score_routes(s: Session) -> list[dict]:
    """Every fit the daily build scores, on its chosen route, once (st.RUNS is 1 here)."""
    # Not read-only: dbt-duckdb keeps the warehouse open in this process, and DuckDB refuses a
    # second connection to one file with a different configuration.
    raw = st.connect(s.project.warehouse)
    out = []
    try:
        for sc in scored_fits(raw, s.defs):
            m, fit = sc.model, sc.fit
            if fit["route"] == "sql":
                secs, table = st.sql_path(raw, registered_select(fit, m)), st.SQL_TABLE
            else:
                path = artifacts.resolve(s.project.warehouse, fit["artifact_path"])
                consts = {"fit_id": fit["fit_id"], "model_name": m.name, "model_version": m.version}
                rel = raw.sql(population(m).sql("duckdb"))
                secs = st.python_model_path(
                    raw, m, path, fit["artifact_sha256"], relation=rel, constants=consts
                )
                table = st.PYMODEL_TABLE
            diff, matched, dbt_rows = diff_vs_dbt(raw, table, f"audit.{sc.dbt_name}", m.key)
            if matched != dbt_rows:
                raise SystemExit(f"{sc.dbt_name}: {matched:,} of dbt's {dbt_rows:,} rows matched")
            out.append(
                {"name": sc.dbt_name, "route": fit["route"], "seconds": secs, "rows": matched}
                | {"max_abs_diff_vs_dbt": diff}
            )
        for table in (st.SQL_TABLE, st.PYMODEL_TABLE):
            raw.execute(f"drop table if exists {table}")
    finally:
        raw.close()
    return out


# -- report -----------------------------------------------------------------------------------
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


def daily_table(daily: dict, routes: list[dict], scored: int) -> list[str]:
    nodes = {n["name"]: n for n in daily["dbt_runs"][-1].nodes}
    lines = [
        f"daily build vs the chosen routes over the same {scored:,} open leads (lead_features "
        "filtered by each model's population, as the generated models read it)",
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
    lines.append(f"  {'sum':<32} {'':<6} {'':>9} " + " ".join(f"{v:>9.3f}" for v in sums))
    lines.append(
        f"daily build {daily['total']:.2f} s / sum of chosen routes {sums[0]:.3f} s = "
        f"{daily['total'] / sums[0]:.1f}x (goal <= 1.5x)"
    )
    lines.append("where the daily build's time goes (s; concurrent dbt nodes share the wall time):")
    lines += [f"  {name:<64} {secs:>7.2f}" for name, secs in daily["where"].items()]
    return [*lines, f"  {'total':<64} {daily['total']:>7.2f}"]


def where(daily: dict) -> dict[str, float]:
    parts = dbt_breakdown(daily["dbt_runs"][-1])
    parts[PUBLISH] = daily["phases"].get(PUBLISH, 0.0)
    parts["write generated files, lock, registry, other"] = (
        daily["phases"].get(WRITE, 0.0) + daily["phases"][OTHER]
    )
    return parts


def summary(rows: int, scored: int, daily: dict, routes: list[dict]) -> str:
    chosen = sum(r["seconds"] for r in routes)
    big = sorted(daily["where"].items(), key=lambda kv: -kv[1])[:4]
    parts = "; ".join(f"{re.split(r'[:(]', k)[0].strip()} {v:.1f} s" for k, v in big)
    return (
        f"summary: daily build of {rows:,} leads ({scored:,} open, {len(routes)} fits) "
        f"{daily['total']:.1f} s vs {chosen:.2f} s of chosen-route scoring = "
        f"{daily['total'] / chosen:.1f}x (goal <= 1.5x); largest parts: {parts}"
    )


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="synthetic leads")
    ap.add_argument("--runs", type=int, default=2, help="daily builds and route runs (best kept)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the first data set")
    ap.add_argument("--retrain-seed", type=int, default=43, help="seed of the fresh data")
    ap.add_argument("--workdir", help="build the project here and keep it (default: a temp dir)")
    ap.add_argument("--dbt-threads", type=int, help="dbt threads (default: the profile's, 2)")
    ap.add_argument("--out", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)
    if args.rows < 1000:
        ap.error("--rows must be at least 1000 (the models' time split needs a year of leads)")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.workdir and Path(args.workdir).exists() and any(Path(args.workdir).iterdir()):
        ap.error(f"--workdir {args.workdir} is not empty")
    return args


def run(args: argparse.Namespace, root: Path) -> dict:
    s = make_project(root, args.dbt_threads)
    st.say(f"project in {root}")
    res: dict[str, Any] = {"load_s": load(s, args.rows, args.seed)}
    cmds = {
        "train": command("train", lambda: lifecycle.run_train(s)),
        "build": command("build", lambda: build_flow.run_build(s)),
    }
    st.say("fresh data for the retrain")
    res["reload_s"] = load(s, args.rows, args.retrain_seed)
    cmds["retrain"] = command("retrain", lambda: lifecycle.run_retrain(s))
    res["outcomes"] = [f"{o.model} {o.outcome}" for o in cmds["retrain"]["result"]]
    res["load_before_daily"] = loadavg()
    dailies, route_runs = [], []
    st.RUNS = 1  # score_throughput's best_of: the best of --runs is kept here, interleaved
    for i in range(1, args.runs + 1):
        dailies.append(command(f"build (daily {i}/{args.runs})", lambda: build_flow.run_build(s)))
        st.say(f"chosen routes, run {i}/{args.runs}")
        route_runs.append(score_routes(s))
    cmds["daily"] = daily = min(dailies, key=lambda d: d["total"])
    daily["where"] = where(daily)
    routes = [min(rs, key=lambda r: r["seconds"]) for rs in zip(*route_runs, strict=True)]
    scored = {r["rows"] for r in routes}
    if scored != {daily["result"]["rows_scored"]}:
        raise SystemExit(f"rows scored per fit {scored} vs {daily['result']['rows_scored']:,}")
    return res | {"cmds": cmds, "dailies": [d["total"] for d in dailies], "routes": routes}


def report(args: argparse.Namespace, res: dict, load_start: str, elapsed: float) -> list[str]:
    daily, routes = res["cmds"]["daily"], res["routes"]
    scored = routes[0]["rows"]
    versions = ", ".join(
        f"{p} {md.version(p)}" for p in ("duckdb", "dbt-core", "dbt-duckdb", "scikit-learn")
    )
    return [
        f"mlsm lifecycle: {args.rows:,} leads; {scored:,} open leads scored per fit (population "
        f"{models_py.PROJECT.models[0].population!r}); best of {args.runs} for the daily build "
        "and the routes",
        f"{versions}, python {platform.python_version()}; {os.cpu_count()} cores; dbt threads "
        f"{args.dbt_threads or 2}, DuckDB threads {st.THREADS}",
        f"load average (1/5/15 min): start {load_start}, before the daily builds "
        f"{res['load_before_daily']}, end {loadavg()}",
        f"data: generate + load {res['load_s']:.1f} s, fresh data {res['reload_s']:.1f} s; "
        f"retrain: {', '.join(res['outcomes'])}; daily builds "
        + ", ".join(f"{t:.2f}" for t in res["dailies"])
        + " s",
        *phase_table(res["cmds"]),
        *daily_table(daily, routes, scored),
        summary(args.rows, scored, daily, routes),
        f"total runtime {elapsed:.0f} s",
    ]


def main(argv: list[str] | None = None) -> int:
    # ColumnTransformer hands LightGBM a numpy array; names were checked one step earlier.
    warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
    args = parse_args(argv)
    t0, load_start = time.perf_counter(), loadavg()
    undo = instrument()
    try:
        if args.workdir:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
            res = run(args, Path(args.workdir).resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="mlsm_lifecycle_") as tmp:
                res = run(args, Path(tmp))
    finally:
        for owner, name, fn in reversed(undo):
            setattr(owner, name, fn)
    lines = report(args, res, load_start, time.perf_counter() - t0)
    st.say("")
    for line in lines:
        st.say(line)
    if args.out:
        cmds, daily = res["cmds"], res["cmds"]["daily"]
        doc = {"report": lines, "rows": args.rows, "daily_builds_s": res["dailies"]} | {
            "commands": {
                k: {"total_s": v["total"], "phases_s": v["phases"]} for k, v in cmds.items()
            },
            "daily_where_s": daily["where"],
            "daily_dbt_nodes": daily["dbt_runs"][-1].nodes,
            "routes": res["routes"],
        }
        Path(args.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        st.say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

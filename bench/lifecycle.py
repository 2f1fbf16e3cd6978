"""The model lifecycle, timed, and the daily build set against the scoring work inside it.

On a throw-away project (a copy of dbt_project/ and macros/, the demo definitions, its own
warehouse): generate_leads(N); `mlsm train`; `mlsm build`; fresh data; `mlsm retrain`; then
--runs times, interleaved so machine load hits both alike, a daily `mlsm build` and every fit
it scores on its chosen route outside dbt (score_throughput.py's functions), over the same
population rows of the same lead_features, checked equal to dbt's tables.

The lifecycle code reports no phase times: this script wraps the functions it calls (in this
process only) and books each call's time, minus wrapped calls inside it, to a phase. dbt node
times come from target/run_results.json. Timings are for reading, never for asserting.

--population all removes the demo models' population filter (open leads only, ~4% of rows), so
every lead is scored, as score_throughput.py scores them.

    python bench/lifecycle.py --rows 1000000 [--population open|all] [--runs 2] [--seed 42]
        [--retrain-seed 43] [--dbt-threads N] [--workdir DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import _lifecycle_report as rp
import duckdb
import score_throughput as st
from sqlglot import exp

import models_py
from mlsm_py.dbt import runner
from mlsm_py.demo.data import generate_leads, load_leads
from mlsm_py.flow import build as build_flow
from mlsm_py.flow import compiled, lifecycle, readers
from mlsm_py.flow.session import Session, scored_fits
from mlsm_py.project import Project
from mlsm_py.registry import artifacts
from mlsm_py.spec import Definitions
from mlsm_py.train import fitting, segmented, trainer

ROOT = st.ROOT


# -- phase times ------------------------------------------------------------------------------
class Recorder:
    """Exclusive time per phase: a wrapped call inside another is booked to its own phase.
    `dbt_runs`: (start, end, nodes) of each dbt invocation, epoch seconds like dbt's own."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.dbt_runs: list[tuple[float, float, list[dict]]] = []
        self._inner: list[float] = []  # time spent in wrapped calls, per open call

    def call(self, phase: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._inner.append(0.0)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - t0
            self.phases[phase] = self.phases.get(phase, 0.0) + elapsed - self._inner.pop()
            if self._inner:
                self._inner[-1] += elapsed


REC = Recorder()


def _wrap(owner: Any, name: str, phase: str, undo: list) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return REC.call(phase, fn, *args, **kwargs)

    setattr(owner, name, wrapper)
    undo.append((owner, name, fn))


def _timed_clone(clone: Callable[..., Any]) -> Callable[..., Any]:
    """fitting.fit fits `clone(model.estimator)`: time that estimator's own fit. The timing
    shim is an instance attribute, removed before fitting so the saved artifact never has it."""

    def wrapped(est: Any, *args: Any, **kwargs: Any) -> Any:
        c = clone(est, *args, **kwargs)
        fit = c.fit

        def timed_fit(*a: Any, **k: Any) -> Any:
            del c.fit
            return REC.call(rp.FIT, fit, *a, **k)

        c.fit = timed_fit
        return c

    return wrapped


def _timed_dbt(build: Callable[..., Any]) -> Callable[..., Any]:
    """runner.build: the features-only build (a selection) and the whole build are two phases;
    after each, dbt's run_results.json is read for the node timings."""

    @functools.wraps(build)
    def wrapped(ctx: runner.DbtContext, select: Any = None, variables: Any = None) -> Any:
        t0 = time.time()
        out = REC.call(rp.DBT_FEATURES if select else rp.DBT, build, ctx, select, variables)
        REC.dbt_runs.append((t0, time.time(), dbt_nodes(ctx.dbt_dir / "target")))
        return out

    return wrapped


# Where the lifecycle code looks each name up (a `from x import f` copy is patched where used).
WRAPPED = [
    (trainer, "read_window", rp.READ),
    (segmented, "fit_windows", rp.TRAIN),
    (lifecycle, "compile_fit", rp.COMPILE),
    (compiled, "check_parity", rp.PARITY),
    (compiled, "check_parity_python", rp.PARITY),
    (lifecycle, "_decide", rp.JUDGE),
    (lifecycle, "_register_trained", rp.REGISTRY),
    (lifecycle, "_stage", rp.REGISTRY),
    (lifecycle, "sync_files", rp.WRITE),
    (build_flow, "sync_files", rp.WRITE),
    (build_flow, "publish", rp.PUBLISH),
    (readers, "export", rp.READERS),
]


def instrument() -> list:
    undo: list = []
    for owner, name, phase in WRAPPED:
        _wrap(owner, name, phase, undo)
    for owner, name, make in ((fitting, "clone", _timed_clone), (runner, "build", _timed_dbt)):
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, make(getattr(owner, name)))
    return undo


# -- dbt node timings -------------------------------------------------------------------------
def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _model_kind(name: str) -> str | None:
    if name.startswith("score__"):
        return rp.SCORE_MODELS
    return rp.UNION if name in ("scores", "winners") else None


def _kind(uid: str, manifest: dict) -> str:
    nodes = manifest.get("nodes", {})
    node = nodes.get(uid) or manifest.get("unit_tests", {}).get(uid) or {}
    resource = uid.split(".", 1)[0]
    if resource == "unit_test":
        return rp.SCORE_CHECKS
    if resource == "model":
        return _model_kind(node.get("name", "")) or rp.FEATURE_MODELS
    deps = node.get("depends_on", {}).get("nodes", [])
    if any(_model_kind(nodes.get(d, {}).get("name", "")) for d in deps):
        return rp.SCORE_CHECKS
    if any(d.startswith("source.") and ".mlsm_registry." in d for d in deps):
        return rp.REGISTRY_CHECKS
    return rp.INPUT_CHECKS


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


def dbt_breakdown(run: tuple[float, float, list[dict]]) -> dict[str, float]:
    """A dbt invocation's wall time split: start-up, each node kind's share (nodes running at
    the same time split the interval equally), and the rest (between nodes, wrap-up)."""
    started, finished, nodes = run
    first = min((n["start"] for n in nodes), default=finished)
    out = dict.fromkeys([rp.STARTUP, *rp.NODE_KINDS, rp.IDLE], 0.0) | {rp.STARTUP: first - started}
    points = sorted({t for n in nodes for t in (n["start"], n["end"])})
    busy = 0.0
    for a, b in zip(points, points[1:], strict=False):
        live = [n["kind"] for n in nodes if n["start"] <= a and n["end"] >= b]
        for kind in live:
            out[kind] += (b - a) / len(live)
        busy += (b - a) if live else 0.0
    out[rp.IDLE] = finished - first - busy
    return out


# -- the project ------------------------------------------------------------------------------
def definitions(mode: str) -> Definitions:
    """The demo definitions; with `all`, every model without its population filter."""
    if mode == "open":
        return models_py.PROJECT
    models = [dataclasses.replace(m, population=None) for m in models_py.PROJECT.models]
    return Definitions(models, models_py.PROJECT.summaries)


def make_project(root: Path, dbt_threads: int | None, defs: Definitions) -> Session:
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
    p._definitions = defs
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
    REC.phases, REC.dbt_runs = {}, []
    out, total = st.timed(fn)
    phases = dict(REC.phases)
    phases[rp.OTHER] = total - sum(phases.values())
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
    """max |diff| of the scores, rows matched on the key, rows in dbt's table."""
    a, b = exp.column("score", table="a"), exp.column("score", table="b")
    count = exp.select(exp.Count(this=exp.Star())).from_(exp.to_table(dbt_table)).subquery()
    q = (
        exp.select(exp.func("max", exp.Abs(this=a - b)), exp.Count(this=exp.Star()), count)
        .from_(exp.to_table(table).as_("a"))
        .join(exp.to_table(dbt_table).as_("b"), using=[key])
    )
    worst, matched, dbt_rows = raw.execute(q.sql("duckdb")).fetchone()
    return float(worst or 0.0), matched, dbt_rows


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


# -- main -----------------------------------------------------------------------------------
def where(daily: dict) -> dict[str, float]:
    parts = dbt_breakdown(daily["dbt_runs"][-1])
    for phase in (rp.PUBLISH, rp.READERS):
        parts[phase] = daily["phases"].get(phase, 0.0)
    parts["write generated files, lock, registry, other"] = (
        daily["phases"].get(rp.WRITE, 0.0) + daily["phases"][rp.OTHER]
    )
    return parts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="synthetic leads")
    ap.add_argument(
        "--population",
        choices=("open", "all"),
        default="open",
        help="open: the demo's filter, open leads only (default); all: no filter, every lead",
    )
    ap.add_argument("--runs", type=int, default=2, help="daily builds and route runs (best kept)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the first data set")
    ap.add_argument("--retrain-seed", type=int, default=43, help="seed of the fresh data")
    ap.add_argument("--workdir", help="build the project here and keep it (default: a temp dir)")
    ap.add_argument("--dbt-threads", type=int, help="dbt threads (default: the profile's, 2)")
    ap.add_argument("--out", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)
    if args.rows < 1000 or args.runs < 1:
        ap.error("--rows must be at least 1000 (a year of leads for the time split), --runs 1")
    if args.workdir and Path(args.workdir).exists() and any(Path(args.workdir).iterdir()):
        ap.error(f"--workdir {args.workdir} is not empty")
    return args


def run(args: argparse.Namespace, root: Path) -> dict:
    defs = definitions(args.population)
    s = make_project(root, args.dbt_threads, defs)
    filters = sorted({m.population for m in defs.models}, key=str)  # None: no filter
    st.say(f"project in {root}; population {args.population}: {rp.filters_text(filters)}")
    res: dict[str, Any] = {"population": {"mode": args.population, "filters": filters}}
    res["load_s"] = load(s, args.rows, args.seed)
    cmds = {
        "train": command("train", lambda: lifecycle.run_train(s)),
        "build": command("build", lambda: build_flow.run_build(s)),
    }
    st.say("fresh data for the retrain")
    res["reload_s"] = load(s, args.rows, args.retrain_seed)
    cmds["retrain"] = command("retrain", lambda: lifecycle.run_retrain(s))
    res["outcomes"] = [f"{o.model} {o.outcome}" for o in cmds["retrain"]["result"]]
    res["load_before_daily"] = rp.loadavg()
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


def main(argv: list[str] | None = None) -> int:
    # ColumnTransformer hands LightGBM a numpy array; names were checked one step earlier.
    warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
    args = parse_args(argv)
    t0, load_start = time.perf_counter(), rp.loadavg()
    undo = instrument()
    try:
        if args.workdir:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mlsm_lifecycle_") as tmp:
            res = run(args, Path(args.workdir or tmp).resolve())
    finally:
        for owner, name, fn in reversed(undo):
            setattr(owner, name, fn)
    lines = rp.report(args, res, load_start, time.perf_counter() - t0, st.THREADS)
    st.say("")
    for line in lines:
        st.say(line)
    if args.out:
        cmds, daily = res["cmds"], res["cmds"]["daily"]
        doc = {"report": lines, "rows": args.rows, "population": res["population"]} | {
            "daily_builds_s": res["dailies"],
            "commands": {
                k: {"total_s": v["total"], "phases_s": v["phases"]} for k, v in cmds.items()
            },
            "daily_where_s": daily["where"],
            "daily_dbt_nodes": daily["dbt_runs"][-1][2],
            "routes": res["routes"],
        }
        Path(args.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        st.say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

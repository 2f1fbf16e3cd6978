"""Fan-out at factory scale: 18 definitions (3 families x 6 targets) x 21 markets = 378 fits.

On a throw-away project (a copy of dbt_project/ and macros/, its own warehouse): the demo
generator's leads (N of them) gain a `market` column of 21 levels and six targets `p1`..`p6`
(one per product: the demo's conversion signal with a product-specific tilt, NULL while a
lead is open). Each family (logistic regression, LightGBM, ExtraTrees) is defined once per
target with `segment_by="market"`, every lead in the population (no open-leads filter).

It runs `mlsm train`, `mlsm build`, new data, then times `mlsm retrain` by phase (read, fit,
compile, parity, write, dbt build; bench/lifecycle.py's instrumentation) with the peak RSS
of the process after each phase, the size of the generated project, and `--runs` daily
`mlsm build`s. Then the same 18 definitions without segments (one fit each) are trained in a
second project on the same data, and their daily build is timed: the ratio is the cost of
routing every lead to one of 21 fits per definition. Timings are for reading, never asserted.

    python bench/fanout.py [--rows 1000000] [--markets 21] [--targets 6] [--runs 2]
        [--families logreg,lgbm,extra_trees] [--workdir DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import _lifecycle_report as rp
import duckdb
import lifecycle as lc
import numpy as np
import pyarrow as pa
import score_throughput as st
from lightgbm import LGBMClassifier
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import models_py.leads as demo
from mlsm_py.demo.data import generate_leads, load_leads
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_retrain, run_train
from mlsm_py.spec import Definitions, Field

MARKET = Field("market", "category", nullable=False, description="sales market")


def families() -> dict:
    num_scaled = Pipeline(
        [("impute", demo.SimpleImputer(strategy="median")), ("scale", demo.StandardScaler())]
    )
    return {
        "logreg": lambda: Pipeline(
            [("columns", demo._columns(num_scaled)), ("model", LogisticRegression(max_iter=500))]
        ),
        "lgbm": lambda: Pipeline(
            [
                ("columns", demo._columns("passthrough")),
                (
                    "model",
                    LGBMClassifier(
                        n_estimators=100,
                        learning_rate=0.08,
                        num_leaves=15,
                        min_child_samples=50,
                        random_state=7,
                        deterministic=True,
                        force_row_wise=True,
                        n_jobs=2,
                        verbose=-1,
                    ),
                ),
            ]
        ),
        "extra_trees": lambda: Pipeline(
            [
                ("columns", demo._columns(demo.SimpleImputer(strategy="median"))),
                (
                    "model",
                    ExtraTreesClassifier(
                        n_estimators=30, max_depth=7, min_samples_leaf=50, random_state=7, n_jobs=2
                    ),
                ),
            ]
        ),
    }


def definitions(names: list[str], targets: int, segmented: bool) -> Definitions:
    fam = families()
    models = []
    for f in names:
        for t in range(1, targets + 1):
            base = demo._model(f"{f}_p{t}", "live", fam[f](), f"{f} for product {t}")
            m = dataclasses.replace(
                base, target=f"p{t}", fields=(*demo.FIELDS, MARKET), population=None
            )
            if segmented:
                m = dataclasses.replace(m, segment_by="market", segment_min_rows=500)
            models.append(m)
    return Definitions(models)


def leads(rows: int, markets: int, targets: int, seed: int) -> pa.Table:
    """The demo leads with a market and one target per product (NULL while open)."""
    t = generate_leads(rows, seed)
    rng = np.random.default_rng(seed + 100)
    ids = t.column("lead_id").to_numpy()
    # Market sizes and product tilts are fixed (seed 0): fresh data is the same world.
    world = np.random.default_rng(0)
    weights = world.dirichlet(np.full(markets, 3.0))
    tilts = world.normal(0, [0.5, 0.4], size=(targets, 2))
    market = rng.choice([f"m{i:02d}" for i in range(1, markets + 1)], len(ids), p=weights)
    t = t.append_column("market", pa.array(market))
    conv = t.column("converted").to_numpy(zero_copy_only=False).astype("float64")
    visits = np.nan_to_num(t.column("visits").to_numpy(zero_copy_only=False).astype("float64"))
    quotes = t.column("quotes_requested").to_numpy(zero_copy_only=False).astype("float64")
    for k in range(1, targets + 1):
        tilt = tilts[k - 1, 0] * np.log1p(visits) + tilts[k - 1, 1] * quotes
        flip = rng.random(len(ids)) < 1 / (1 + np.exp(2.5 - tilt))
        label = np.where(np.isnan(conv), np.nan, np.where(flip, 1.0 - conv, conv))
        t = t.append_column(f"p{k}", pa.array(label, mask=np.isnan(label)))
    return t


def add_columns(dbt_dir: Path, targets: int) -> None:
    """The copy's staging and feature models pass `market` and the targets through."""
    extra = ["market", *(f"p{k}" for k in range(1, targets + 1))]
    stg = dbt_dir / "models" / "staging" / "stg_leads__leads.sql"
    casts = ",\n        ".join(
        ["market"] + [f"cast(p{k} as integer) as p{k}" for k in range(1, targets + 1)]
    )
    text = stg.read_text().replace(
        "cast(converted as integer) as converted",
        f"cast(converted as integer) as converted,\n        {casts}",
    )
    stg.write_text(text)
    feat = dbt_dir / "models" / "features" / "lead_features.sql"
    text = feat.read_text().replace(
        "        converted\n", "        converted,\n        " + ",\n        ".join(extra) + "\n"
    )
    feat.write_text(text)


def project(root: Path, defs: Definitions, targets: int):
    s = lc.make_project(root, None, defs)
    add_columns(s.project.dbt_dir, targets)
    return s


def load(s, table: pa.Table) -> None:
    con = duckdb.connect(str(s.project.warehouse))
    try:
        load_leads(con, table)
    finally:
        con.close()


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tree_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file() and p.suffix in (".sql", ".yml", ".py")]
    return len(files), sum(p.stat().st_size for p in files)


def daily(s, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_build(s)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--markets", type=int, default=21)
    ap.add_argument("--targets", type=int, default=6)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--families", default="logreg,lgbm,extra_trees")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    names = a.families.split(",")
    st.say(f"load average {os.getloadavg()}; {len(names)} families x {a.targets} targets")
    work = a.workdir or Path(tempfile.mkdtemp(prefix="mlsm-fanout-"))
    res: dict = {"args": {k: str(v) for k, v in vars(a).items()}}

    seg = project(work / "segmented", definitions(names, a.targets, True), a.targets)
    data = leads(a.rows, a.markets, a.targets, a.seed)
    load(seg, data)
    t0 = time.perf_counter()
    run_train(seg)
    res["train_s"] = time.perf_counter() - t0
    st.say(f"  mlsm train: {res['train_s']:.0f} s, peak RSS {peak_mib():,.0f} MiB")
    run_build(seg)
    load(seg, leads(a.rows, a.markets, a.targets, a.seed + 1))  # fresh data: a real retrain
    undo = lc.instrument()
    peaks: dict[str, float] = {}
    original = lc.REC.call

    def call(phase, fn, *args, **kw):  # the peak RSS when each phase last ended
        try:
            return original(phase, fn, *args, **kw)
        finally:
            peaks[phase] = peak_mib()

    lc.REC.call = call
    try:
        retrain = lc.command("retrain", lambda: run_retrain(seg))
    finally:
        for owner, name, fn in undo:
            setattr(owner, name, fn)
    outcomes = retrain.pop("result")
    fits = (
        duckdb.connect(str(seg.project.warehouse))
        .execute("select count(*) from mlsm_registry.aliases where alias = 'champion'")
        .fetchone()[0]
    )
    res["retrain"] = {"total_s": retrain["total"], "phases": retrain["phases"], "peaks": peaks}
    res["champion_fits"] = fits
    res["outcomes"] = {
        o: sum(1 for x in outcomes if x.outcome == o) for o in {x.outcome for x in outcomes}
    }
    res["project_files"], res["project_bytes"] = tree_size(seg.project.dbt_dir / "models")
    flat = project(work / "unsegmented", definitions(names, a.targets, False), a.targets)
    load(flat, leads(a.rows, a.markets, a.targets, a.seed + 1))
    run_train(flat)
    res["daily_segmented_s"], res["daily_unsegmented_s"] = [], []
    for _ in range(a.runs):  # interleaved: machine load hits both alike
        res["daily_segmented_s"] += daily(seg, 1)
        res["daily_unsegmented_s"] += daily(flat, 1)

    st.say("")
    st.say(
        f"retrain of {len(names) * a.targets} definitions x {a.markets} markets: "
        f"{fits} champion fits (global fits included); outcomes {res['outcomes']}"
    )
    st.say(f"  {'phase':<42} {'seconds':>9} {'peak RSS MiB':>13}")
    for phase in [*rp.PHASES, rp.OTHER]:
        if phase in retrain["phases"]:
            peak = peaks.get(phase, float("nan"))
            st.say(f"  {phase:<42} {retrain['phases'][phase]:>9.1f} {peak:>13,.0f}")
    st.say(f"  {'total':<42} {retrain['total']:>9.1f} {peak_mib():>13,.0f}")
    st.say(
        f"generated models: {res['project_files']} files, {res['project_bytes'] / 2**20:.1f} MiB"
    )
    seg_best, flat_best = min(res["daily_segmented_s"]), min(res["daily_unsegmented_s"])
    st.say(f"daily mlsm build over {a.rows:,} leads, best of {a.runs}:")
    st.say(
        f"  segmented ({fits} fits): {seg_best:.1f} s; unsegmented "
        f"({len(names) * a.targets} fits): {flat_best:.1f} s; "
        f"ratio {seg_best / flat_best:.2f}x (goal <= 3x)"
    )
    if a.out:
        a.out.write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())

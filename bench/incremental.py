"""What a 15-minute run costs: `mlsm build` after a batch of changed leads, next to a full
rebuild of the same warehouse (`mlsm build --full-refresh`), and a run with no change.

A fresh copy of the demo project is trained on `--train-rows` leads, then `--rows` leads are
loaded and built once. For each batch size, half the batch are new leads (copies of open ones
under new keys) and half are open leads with one more visit; then one timed incremental
build, and one timed full rebuild of the same data. Each build is a subprocess, as cron runs
it. Its wall time is split into columns that add up to it:
- dbt import: importing dbt inside mlsm's process (timed once, alone; `dbt --version` as its
  own process is printed beside it);
- dbt parse and setup: dbt's time from its invocation less its node phase (partial parsing,
  compiling, connections);
- dbt nodes: the node phase's wall time; "(SQL sum)" beside it is the sum of the nodes'
  execute times, which overlap on two threads;
- mlsm: the rest (Python start-up, imports of mlsm and the definitions, the generated files,
  the publish transaction, history, the readers' copy).
dbt runs the profile's two threads, as a cron line does; with `--threads 1` the node phase is
the plain sum.

    python bench/incremental.py --rows 1000000 --batches 1000,10000,100000
    python bench/incremental.py --rows 1000000 --population matured   # the demo's open leads

`--population all` (default): no lead has an outcome, so every model scores every lead, as a
warehouse of fresh leads would. `matured`: the demo's leads, most with an outcome; only the
open ones (4%) are scored.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import engines  # noqa: E402  (the same project copy, loader and subprocess timing)


def _sql(root: Path, *statements: str) -> list:
    import duckdb

    con = duckdb.connect(str(root / "warehouse" / "mlsm.duckdb"))
    try:
        out = []
        for q in statements:
            out.append(con.execute(q).fetchall())
        return out
    finally:
        con.close()


def change(root: Path, n: int, salt: int) -> None:
    """n/2 new open leads and n/2 other open leads with one more visit."""
    top = _sql(root, "select max(lead_id) from raw.leads")[0][0][0]
    half = n // 2

    def pick(skip: int) -> str:
        return (
            f"select lead_id from raw.leads where converted is null and lead_id <= {top} "
            f"order by md5(cast(lead_id + {salt} as varchar)) limit {half} offset {skip}"
        )

    _sql(
        root,
        f"insert into raw.leads select * replace (lead_id + {top} as lead_id) from raw.leads "
        f"where lead_id in ({pick(0)})",
        f"update raw.leads set visits = coalesce(visits, 0) + 1 where lead_id in ({pick(half)})",
    )


def _startup(env: dict) -> tuple[float, float]:
    """(`dbt --version` as its own process, importing dbt inside mlsm's process): the
    second is what a build pays, as mlsm has already imported much of what dbt needs."""
    dbt = Path(sys.executable).with_name("dbt")
    t0 = time.perf_counter()
    subprocess.run([str(dbt), "--version"], env=env, capture_output=True, check=True)
    alone = time.perf_counter() - t0
    probe = (
        "import time, mlsm_py.flow.build; t = time.perf_counter(); import dbt.cli.main; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return alone, float(out.stdout.strip())


def timed(root: Path, args: list[str], env: dict, startup: float) -> dict:
    wall, rss, out = engines._mlsm(root, ["build", *args], env)
    dbt_s = engines._dbt_seconds(out)
    sql_s, nodes = engines._node_seconds(root)
    # With two threads the nodes overlap: their sum is not a part of the wall time, the
    # node phase's own wall time is.
    results = json.loads((root / "dbt_project" / "target" / "run_results.json").read_text())
    run_s = results["elapsed_time"]
    scored = next(
        (ln.strip() for ln in out.splitlines() if ln.strip().startswith(("since", "scored"))), ""
    )
    return {
        "wall_s": wall,
        # mlsm reports dbt's time from its invocation on: the import comes before it.
        "startup_s": startup,
        "dbt_other_s": dbt_s - run_s,
        "run_s": run_s,
        "sql_s": sql_s,
        "mlsm_s": wall - dbt_s - startup,
        "nodes": nodes,
        "rss_mib": rss,
        "scored": scored,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument("--batches", default="1000,10000,100000")
    p.add_argument("--population", choices=("all", "matured"), default="all")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="dbt threads (MLSM_DBT_THREADS); 2, the project profile's default, is what a "
        "cron line runs. With 1 the SQL column is the nodes' sum along one thread",
    )
    a = p.parse_args()
    env = dict(engines.os.environ, MLSM_DBT_THREADS=str(a.threads))
    root = engines._project(Path(tempfile.mkdtemp(prefix="mlsm-bench-incremental-")))
    print(f"project {root}: training on {a.train_rows:,} leads", flush=True)
    engines._load(root, "duckdb", a.train_rows, 42)
    engines._mlsm(root, ["train"], env)
    outcomes = "none" if a.population == "all" else "matured"
    engines._load(root, "duckdb", a.rows, 7, outcomes=outcomes)
    alone, startup = (min(v) for v in zip(*(_startup(env) for _ in range(3)), strict=True))
    print(
        f"{a.rows:,} leads loaded; dbt start-up: `dbt --version` {alone:.1f} s, importing "
        f"dbt after mlsm {startup:.1f} s",
        flush=True,
    )
    rows = [("first build", timed(root, [], env, startup))]
    rows.append(("no change", timed(root, [], env, startup)))
    for i, n in enumerate(int(b) for b in a.batches.split(",")):
        change(root, n, i)
        rows.append((f"{n:,} changed: incremental", timed(root, [], env, startup)))
        rows.append((f"{n:,} changed: full rebuild", timed(root, ["--full-refresh"], env, startup)))
        print(f"  batch {n:,} done", flush=True)
    last = "select rows_scored from mlsm_registry.builds order by started_at desc limit 1"
    scored = _sql(root, last)[0][0][0]
    print(f"\n{a.rows:,} leads, {scored:,} scored by every model (population {a.population})\n")
    print(
        "| run | wall s | dbt import s | dbt parse and setup s | dbt nodes s | (SQL sum) | "
        "mlsm s | vs full rebuild | what it scored |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    full = {r[0].split(":")[0]: r[1]["wall_s"] for r in rows if r[0].endswith("full rebuild")}
    for name, r in rows:
        ref = full.get(name.split(":")[0])
        ratio = f"{r['wall_s'] / ref:.0%}" if ref and "incremental" in name else ""
        print(
            f"| {name} | {r['wall_s']:.1f} | {r['startup_s']:.1f} | {r['dbt_other_s']:.1f} | "
            f"{r['run_s']:.1f} | {r['sql_s']:.1f} | {r['mlsm_s']:.1f} | {ratio} | {r['scored']} |"
        )
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

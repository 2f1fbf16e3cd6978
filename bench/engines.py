"""The daily build on each warehouse, from the same generated project: DuckDB and PostgreSQL,
DuckDB again at a size one machine may not hold, and the scoring SQL alone on local Spark.

For each engine: a fresh copy of the demo project, `--train-rows` leads loaded and `mlsm train
--target ENGINE` (the same fits everywhere: same data, same seeds), then `--rows` leads loaded
in their place and one timed `mlsm build --target ENGINE` (a subprocess: its wall time and
peak RSS are its own). dbt's run_results.json splits the build into the time the warehouse
spent running each node (models and checks: "SQL") and the rest of dbt's wall time ("dbt
overhead": start-up, parsing, compilation, adapter round trips); "publish" is mlsm's
transaction after dbt. dbt runs one thread here, so the SQL time is a sum, not an overlap.

    python bench/engines.py --rows 1000000                 # duckdb, postgres, spark SQL
    python bench/engines.py --rows 1000000 --big 10000000  # and DuckDB at 10M leads
    python bench/engines.py --rows 200000 --engines duckdb,postgres

PostgreSQL: the MLSM_PG_* variables the profile reads (.ci/run's); a database `mlsm_bench`
is created (and dropped at the end). Spark is not a project target (docs/decisions/0023), so
its leg is the scoring SQL only: every champion of the DuckDB run compiled for each engine
(`to_sql`) and run over the same feature rows, `sum(score)` so nothing is written; the same
leg runs on DuckDB and PostgreSQL beside it. Spark needs `pip install -e '.[spark]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _project(root: Path) -> Path:
    for d in ("dbt_project", "macros", "models_py"):
        shutil.copytree(
            ROOT / d,
            root / d,
            ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "__pycache__"),
        )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _load(root: Path, target: str, rows: int, seed: int, outcomes: str = "matured") -> float:
    from mlsm_py import project
    from mlsm_py.demo.data import generate_leads, load_leads

    t = project.load(root, target=target).target
    table = generate_leads(rows, seed, outcomes=outcomes)
    t0 = time.perf_counter()
    con = t.connect()
    try:
        load_leads(con, table, target=t)
    finally:
        con.close()
    return time.perf_counter() - t0


def _mlsm(root: Path, args: list[str], env: dict) -> tuple[float, float, str]:
    """Run `mlsm ARGS` in `root`: (wall seconds, peak RSS in MiB, its output)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlsm_py.cli", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mlsm {' '.join(args)} failed in {root}:\n{out}")
    return wall, usage.ru_maxrss / 1024, out


def _node_seconds(root: Path) -> tuple[float, int]:
    """Seconds the warehouse spent executing dbt's nodes in the last run, and their count."""
    results = json.loads((root / "dbt_project" / "target" / "run_results.json").read_text())
    total = 0.0
    for r in results["results"]:
        for t in r.get("timing", []):
            if t["name"] == "execute" and t.get("started_at") and t.get("completed_at"):
                from datetime import datetime

                a = datetime.fromisoformat(t["started_at"].replace("Z", "+00:00"))
                b = datetime.fromisoformat(t["completed_at"].replace("Z", "+00:00"))
                total += (b - a).total_seconds()
    return total, len(results["results"])


def _rows_scored(root: Path, engine: str) -> int:
    from mlsm_py import project

    t = project.load(root, target=engine).target
    con = t.connect()
    try:
        q = "select rows_scored from mlsm_registry.builds order by started_at desc limit 1"
        return int(con.execute(q).fetchone()[0])
    finally:
        con.close()


def _dbt_seconds(output: str) -> float:
    """dbt's wall time as `mlsm build` prints it: `dbt: ... (12.3 s)`, perhaps followed by
    `; unit tests not rerun ...`."""
    for line in output.splitlines():
        m = re.match(r"\s*dbt: .*?\((\d+(?:\.\d+)?) s\)", line)
        if m:
            return float(m.group(1))
    return float("nan")


def run_engine(engine: str, rows: int, train_rows: int, env: dict, all_open: bool) -> dict:
    root = _project(Path(tempfile.mkdtemp(prefix=f"mlsm-bench-{engine}-")))
    print(f"[{engine}] project {root}: training on {train_rows:,} leads", flush=True)
    _load(root, engine, train_rows, 42)
    _mlsm(root, ["train", "--target", engine], env)
    # The demo's leads (most with an outcome; the models score the open ones), or with
    # --all-open none with an outcome, so every lead is scored by every model.
    load_s = _load(root, engine, rows, 7, outcomes="none" if all_open else "matured")
    print(f"[{engine}] {rows:,} leads loaded in {load_s:.1f} s; mlsm build", flush=True)
    wall, rss, out = _mlsm(root, ["build", "--target", engine], env)
    dbt_s = _dbt_seconds(out)
    sql_s, nodes = _node_seconds(root)
    return {
        "engine": engine,
        "rows": rows,
        "build_s": wall,
        "dbt_s": dbt_s,
        "sql_s": sql_s,
        "dbt_overhead_s": dbt_s - sql_s,
        "other_s": wall - dbt_s,
        "nodes": nodes,
        "peak_rss_mib": rss,
        "load_s": load_s,
        "rows_scored": _rows_scored(root, engine),
        "root": root,
    }


def _engine(name: str):
    from mlsm_py.warehouse import engines

    if name == "duckdb":
        import duckdb

        return engines.DuckDBEngine(duckdb.connect())
    if name == "postgres":
        e = os.environ
        dsn = (
            f"host={e.get('MLSM_PG_HOST', '127.0.0.1')} port={e.get('MLSM_PG_PORT', '5432')} "
            f"user={e.get('MLSM_PG_USER', 'mlsm')} password={e.get('MLSM_PG_PASSWORD', '')} "
            "dbname=mlsm_bench"
        )
        return engines.PostgresEngine(dsn)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return engines.SparkEngine(spark)


def scoring_sql(root: Path, names: list[str]) -> list[dict]:
    """Each champion of the DuckDB run at `root`, compiled per engine, over its features."""
    import duckdb

    from mlsm_py import project, to_sql
    from mlsm_py.registry import artifacts, store

    p = project.load(root, target="duckdb")
    con = duckdb.connect(str(p.warehouse), read_only=True)
    try:
        features = con.execute("select * from lead_features").fetch_arrow_table()
        fits = []
        for model, al in sorted(store.aliases(con).items()):
            row = store.get_fit(con, al[store.CHAMPION])
            path = artifacts.resolve(p.state, row["artifact_path"])
            fits.append((model, artifacts.load(path, row["artifact_sha256"])))
    finally:
        con.close()
    out = []
    for name in names:
        engine = _engine(name)
        t0 = time.perf_counter()
        engine.load("bench_features", features)
        print(f"[{name}] {features.num_rows:,} rows loaded in {time.perf_counter() - t0:.1f} s")
        for model, est in fits:
            sql = to_sql(est, "bench_features", key="lead_id", dialect=name)
            t0 = time.perf_counter()
            engine.fetch_arrow(f"select sum(score) as s from (\n{sql}\n) as scored")
            sec = time.perf_counter() - t0
            print(f"[{name}] {model}: {sec:.1f} s", flush=True)
            out.append({"engine": name, "model": model, "seconds": sec})
        engine.drop("bench_features")
    return out


def _pg_database(name: str, drop: bool = False) -> None:
    import psycopg2

    e = os.environ
    con = psycopg2.connect(
        host=e.get("MLSM_PG_HOST", "127.0.0.1"),
        port=e.get("MLSM_PG_PORT", "5432"),
        user=e.get("MLSM_PG_USER", "mlsm"),
        password=e.get("MLSM_PG_PASSWORD", ""),
        dbname="postgres",
    )
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
        if not drop:
            cur.execute(f"create database {name}")
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--train-rows", type=int, default=20_000)
    ap.add_argument("--engines", default="duckdb,postgres", help="daily build on these")
    ap.add_argument("--sql-engines", default="duckdb,postgres,spark", help="scoring SQL on these")
    ap.add_argument("--big", type=int, default=0, help="DuckDB again at this many leads")
    ap.add_argument(
        "--all-open", action="store_true", help="no lead has an outcome: every one is scored"
    )
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    env = dict(os.environ, MLSM_DBT_THREADS="1", DO_NOT_TRACK="1")
    engines = [e for e in a.engines.split(",") if e]
    sql_engines = [e for e in a.sql_engines.split(",") if e]
    if "spark" in sql_engines:
        try:
            import pyspark  # noqa: F401
        except ImportError:
            print("[spark] skipped: pyspark is not installed (pip install -e '.[spark]')")
            sql_engines.remove("spark")
    if "postgres" in engines or "postgres" in sql_engines:
        env["MLSM_PG_DATABASE"] = os.environ["MLSM_PG_DATABASE"] = "mlsm_bench"
        _pg_database("mlsm_bench")
    print(f"load average {os.getloadavg()[0]:.2f}; dbt threads 1", flush=True)
    results = [run_engine(e, a.rows, a.train_rows, env, a.all_open) for e in engines]
    scoring = scoring_sql(results[0]["root"], sql_engines) if results and sql_engines else []
    if a.big:
        results.append(run_engine("duckdb", a.big, a.train_rows, env, a.all_open))
    if "postgres" in engines or "postgres" in sql_engines:
        _pg_database("mlsm_bench", drop=True)
    base = {r["rows"]: r["build_s"] for r in results if r["engine"] == "duckdb"}
    print()
    print(
        f"{'engine':<9} {'leads':>11} {'scored':>9} {'build s':>8} {'dbt s':>7} {'SQL s':>7} "
        f"{'overhead':>8} {'publish+':>8} {'peak MiB':>8} {'vs duckdb':>9}"
    )
    for r in results:
        ratio = r["build_s"] / base[r["rows"]] if r["rows"] in base else float("nan")
        print(
            f"{r['engine']:<9} {r['rows']:>11,} {r['rows_scored']:>9,} {r['build_s']:>8.1f} "
            f"{r['dbt_s']:>7.1f} {r['sql_s']:>7.1f} {r['dbt_overhead_s']:>8.1f} "
            f"{r['other_s']:>8.1f} {r['peak_rss_mib']:>8.0f} {ratio:>8.2f}x"
        )
    print(
        "\nbuild s: `mlsm build` wall; dbt s: dbt build wall; SQL s: the nodes' execute time; "
        "overhead: dbt s - SQL s; publish+: mlsm around dbt (sync, publish, history, readers' "
        "copy); peak MiB: the mlsm process (a server's own memory is not counted)"
    )
    if scoring:
        print(f"\nscoring SQL alone, {a.rows:,} feature rows (sum(score): nothing written)")
        names = sorted({r["model"] for r in scoring})
        print(f"{'engine':<9} " + " ".join(f"{n:>17}" for n in names) + f" {'total':>8}")
        by = {(r["engine"], r["model"]): r["seconds"] for r in scoring}
        base = {n: by.get(("duckdb", n)) for n in names}
        for e in sql_engines:
            cells = []
            for n in names:
                sec = by.get((e, n))
                ratio = f" ({sec / base[n]:.1f}x)" if sec and base[n] else ""
                cells.append(f"{sec:>8.1f}{ratio:>9}" if sec is not None else f"{'-':>17}")
            total = sum(by.get((e, n), 0.0) for n in names)
            print(f"{e:<9} " + " ".join(cells) + f" {total:>8.1f}")
    if a.out:
        for r in results:
            r.pop("root", None)
        Path(a.out).write_text(json.dumps({"builds": results, "scoring": scoring}, indent=2))


if __name__ == "__main__":
    main()

"""What the readers' copy costs, against the alternatives a team could choose.

Builds a warehouse with published tables of the demo's shape (scores: leads x 4 models,
winners and a call list: one row per lead) and times, best of --runs:

- duckdb-file: what mlsm does after each publication (`flow.readers.export`): a new DuckDB
  file with the published tables, renamed over the old one;
- parquet-dir: one Parquet file per table in a new directory, swapped in by renaming a
  symlink (one rename switches the whole set);
- in-place: nothing copied (readers open the warehouse and block the build): the baseline.

It also reports how long a reader's first query takes on each (the call list's top 100).

    python bench/readers.py --leads 1000000 --runs 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from mlsm_py.flow import readers


def make(con: duckdb.DuckDBPyConnection, leads: int) -> None:
    con.execute("create schema published")
    con.execute("create schema mlsm_registry")
    con.execute(
        f"""create table published.scores as
        select i as lead_id, m as model_name, 1 as model_version, 'fit_' || m as fit_id,
            'champion' as role, 'live' as model_status, hash(i, m) % 100000 / 1e5 as score,
            'run1' as run_id
        from range({leads}) t(i), (values ('a'), ('b'), ('c'), ('d')) v(m)"""
    )
    con.execute(
        """create table published.winners as
        select lead_id, 'w' as summary_model, max(model_name) as winning_model,
            1 as winning_version, max(fit_id) as winning_fit_id, max(score) as score,
            max(score) * 100 as percentile, null::varchar as arm, 'run1' as run_id
        from published.scores group by lead_id"""
    )
    con.execute(
        """create table published.call_list as
        select row_number() over (order by score desc, lead_id) as call_rank, *,
            'de' as country, 'software' as industry, 12 as visits
        from published.winners"""
    )
    con.execute("create table mlsm_registry.builds as select 'run1' as run_id, now() as at")


def parquet_dir(con: duckdb.DuckDBPyConnection, root: Path, tables: list[str]) -> Path:
    new = root / f"published.{time.time_ns()}"
    new.mkdir()
    for t in tables:
        con.execute(f"copy published.{t} to '{new / t}.parquet' (format parquet)")
    link = root / "published"
    tmp = root / ".published.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(new.name, tmp)
    os.replace(tmp, link)
    return link


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlsm-readers-"))
    try:
        wh = root / "mlsm.duckdb"
        con = duckdb.connect(str(wh))
        make(con, args.leads)
        tables = ["scores", "winners", "call_list"]
        rows = sum(con.execute(f"select count(*) from published.{t}").fetchone()[0] for t in tables)
        t_file = best(lambda: readers.export(con, wh, tables, {}), args.runs)
        pq = root / "parquet"
        pq.mkdir()
        t_pq = best(lambda: parquet_dir(con, pq, tables), args.runs)
        con.close()
        top = "select * from {} order by call_rank limit 100"
        r = duckdb.connect(str(readers.readers_file(wh)), read_only=True)
        q_file = best(lambda: r.execute(top.format("published.call_list")).fetchall(), 3)
        r.close()
        p = duckdb.connect()
        src = f"read_parquet('{pq / 'published' / 'call_list.parquet'}')"
        q_pq = best(lambda: p.execute(top.format(src)).fetchall(), 3)
        w = duckdb.connect(str(wh), read_only=True)
        q_in = best(lambda: w.execute(top.format("published.call_list")).fetchall(), 3)
        w.close()
        size_file = readers.readers_file(wh).stat().st_size
        size_pq = sum(f.stat().st_size for f in (pq / "published").resolve().glob("*.parquet"))
        print(f"{args.leads:,} leads, {rows:,} published rows; best of {args.runs}")
        print(f"{'readers copy':<14} {'write s':>8} {'MB':>7} {'top-100 query s':>16}")
        print(f"{'duckdb-file':<14} {t_file:8.2f} {size_file / 1e6:7.1f} {q_file:16.4f}")
        print(f"{'parquet-dir':<14} {t_pq:8.2f} {size_pq / 1e6:7.1f} {q_pq:16.4f}")
        print(f"{'in-place':<14} {0.0:8.2f} {'-':>7} {q_in:16.4f}")
        print(f"duckdb-file / parquet-dir write: {t_file / t_pq:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

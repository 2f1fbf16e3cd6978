"""Latency of `mlsm serve` over loopback, next to the library's own predict_proba.

Starts the real server (uvicorn) on a demo project, drives it with a real HTTP client
(httpx, keep-alive, one client per worker thread) and prints p50/p95/p99 per cell:
1-record and 100-record requests at concurrency 1 and 8. Each cell is bounded by a request
count and a time budget. Beside it: every live champion's library predict_proba on one row
(the pandas frame built per call, as a service wrapping the library would), and the same
champions through the compiled Python evaluator in-process (no HTTP).

    python bench/serve_latency.py                       # makes a 20,000-lead demo in a temp dir
    python bench/serve_latency.py --project DIR         # a project whose demo has run
    python bench/serve_latency.py --requests 2000 --seconds 20

The goal (issue: real-time scoring): p99 < 10 ms for one record with all demo models, bands
and winners, on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _demo(rows: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlsm-serve-bench-"))
    for d in ("dbt_project", "macros", "models_py"):
        shutil.copytree(
            ROOT / d, root / d, ignore=shutil.ignore_patterns("target", "logs", "__pycache__")
        )
    (root / "pyproject.toml").write_text(
        '[tool.mlsm]\ndefinitions = "models_py:PROJECT"\ndbt_project = "dbt_project"\n'
        'warehouse = "warehouse/mlsm.duckdb"\n'
    )
    print(f"making a {rows:,}-lead demo in {root} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "mlsm_py.cli", "demo", "--rows", str(rows)],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return root


def _records(root: Path, n: int) -> list[dict]:
    con = duckdb.connect(str(root / "warehouse" / "mlsm.duckdb"), read_only=True)
    try:
        cur = con.execute(f"select * from main.lead_features order by lead_id limit {n}")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    return [json.loads(json.dumps(r, default=str)) for r in rows]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cell(url: str, body: dict, concurrency: int, requests: int, seconds: float) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    per = max(1, requests // concurrency)

    def worker() -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=30) as c:
            c.post("/score", json=body)  # connection set up outside the timing
            for _ in range(per):
                if time.perf_counter() > deadline:
                    break
                t = time.perf_counter()
                r = c.post("/score", json=body)
                mine.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def _pct(times: list[float]) -> tuple[float, float, float]:
    a = np.asarray(times) * 1e3
    return tuple(float(np.percentile(a, q)) for q in (50, 95, 99))  # type: ignore[return-value]


def _library_and_evaluator(root: Path, record: dict, repeat: int) -> tuple[list, list]:
    """Per live champion: predict_proba on one row, and the compiled evaluator on it."""
    from mlsm_py.flow import serving
    from mlsm_py.registry import artifacts
    from mlsm_py.serve.state import load_state

    wh = root / "warehouse" / "mlsm.duckdb"
    from mlsm_py import project

    defs = project.load(root).definitions
    state = load_state(wh, defs, {})
    man = serving.read(wh)
    lib, ev = [], []
    for entry in man["models"]:
        if entry["model"] not in state.models:
            continue
        fit = next(f for f in entry["fits"] if f["role"] == "champion" and f["segment"] is None)
        est = artifacts.load(artifacts.resolve(wh, fit["artifact"]), fit["artifact_sha256"])
        names = list(est.feature_names_in_)
        t = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            df = pd.DataFrame([{n: record.get(n) for n in names}]).astype(
                {n: "float64" for n in names if not isinstance(record.get(n), str)}
            )
            est.predict_proba(df)
            t.append(time.perf_counter() - t0)
        lib.append((entry["model"], t))
        scorer = state.fits[fit["fit_id"]]
        t = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            scorer.score(record)
            t.append(time.perf_counter() - t0)
        ev.append((entry["model"], t))
    return lib, ev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="a project whose demo has run")
    ap.add_argument("--rows", type=int, default=20_000, help="demo size when no --project")
    ap.add_argument("--requests", type=int, default=2000, help="requests per cell (bound)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time per cell (bound)")
    ap.add_argument("--workers", default="1,2", help="server processes to try (default 1,2)")
    args = ap.parse_args()
    root = args.project.resolve() if args.project else _demo(args.rows)
    records = _records(root, 100)
    for workers in [int(w) for w in args.workers.split(",")]:
        _server_cells(root, records, workers, args)
    _in_process(root, records)


def _server_cells(root: Path, records: list[dict], workers: int, args) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlsm_py.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                health = httpx.get(f"{url}/health").json()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"mlsm serve did not start: {proc.stdout.read()}") from None
                time.sleep(0.2)
        models = httpx.get(f"{url}/models").json()["models"]
        time.sleep(3 if workers > 1 else 0)  # every worker up before the first cell
        print(
            f"server, {workers} worker(s): {health['models']} live models, "
            f"{health['fits']} champion fits "
            f"({', '.join(m['model'] for m in models)}); every answer has scores, "
            "percentile, decile and winners"
        )
        print(
            f"{'request':<12} {'concurrency':>11} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'req/s':>8}"
        )
        for size in (1, 100):
            body = {"records": records[:size]}
            for conc in (1, 8):
                t0 = time.perf_counter()
                times = _cell(url, body, conc, args.requests, args.seconds)
                wall = time.perf_counter() - t0
                p50, p95, p99 = _pct(times)
                print(
                    f"{size:>4} record{'s' if size > 1 else ' '}  {conc:>11} {len(times):>6} "
                    f"{p50:>8.2f} {p95:>8.2f} {p99:>8.2f} {len(times) / wall:>8.0f}",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _in_process(root: Path, records: list[dict]) -> None:
    lib, ev = _library_and_evaluator(root, records[0], 300)
    print("one record, in-process, per live champion (ms, p50 / p99):")
    print(f"  {'model':<18} {'library predict_proba':>22} {'compiled evaluator':>20} {'ratio':>7}")
    for (name, lt), (_, et) in zip(lib, ev, strict=True):
        lp, ep = _pct(lt), _pct(et)
        print(
            f"  {name:<18} {lp[0]:>10.3f} / {lp[2]:<9.3f} {ep[0]:>8.3f} / {ep[2]:<9.3f} "
            f"{statistics.median(lt) / statistics.median(et):>6.1f}x"
        )
    total_lib = sum(statistics.median(t) for _, t in lib) * 1e3
    total_ev = sum(statistics.median(t) for _, t in ev) * 1e3
    print(f"  {'all champions':<18} {total_lib:>10.3f} {'':<11} {total_ev:>8.3f}")


if __name__ == "__main__":
    main()

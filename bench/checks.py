"""What data checkers 1 and 2 and the stable bands add to the daily build.

On a throw-away project with the demo definitions: generate N leads, `mlsm train`, then
--runs daily `mlsm build`s. From dbt's run_results.json, the execute time of every node that
exists only for the checks (audit.input_drift, audit.score_checks, score_bands and every test
on them; the volume, freshness, coverage and band tests); and, directly in DuckDB on the same
audited score tables, the `scores` model with and without its percentile/decile placement.
Prints both against the rest of the build. Timings are for reading, never for asserting.

    python bench/checks.py --rows 1000000 [--population open|all] [--runs 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).parent))
import lifecycle as lc  # noqa: E402
import score_throughput as st  # noqa: E402

from mlsm_py.flow.build import run_build  # noqa: E402
from mlsm_py.flow.lifecycle import run_train  # noqa: E402

CHECK_MODELS = {"input_drift", "score_checks", "score_bands"}
CHECK_TESTS = ("volume_change", "_fresh", "every_record_has_a_winner", "percentile", "decile")


def is_check(node: dict) -> bool:
    name = node["name"]
    if name in CHECK_MODELS or name == "score_bands_rule":
        return True
    if node["unique_id"].startswith("test."):
        return name.startswith(("input_drift__", "score_checks__")) or any(
            t in name for t in CHECK_TESTS
        )
    return False


def placement_cost(warehouse: Path, target: Path, runs: int) -> tuple[float, float]:
    """CTAS of the compiled `scores` model with and without its band placement."""
    compiled = next(target.glob("compiled/*/models/scores/scores.sql")).read_text()
    without = compiled.replace("from placed", "from unioned").replace("placed.*", "unioned.*")
    assert without != compiled, "the compiled scores model has no `placed` step"
    con = duckdb.connect(str(warehouse))
    try:
        out = []
        for sql in (compiled, without):
            best = float("inf")
            for _ in range(runs):
                t0 = time.perf_counter()
                con.execute(f"create or replace temp table bench_scores as {sql}")
                best = min(best, time.perf_counter() - t0)
            out.append(best)
        return out[0], out[1]
    finally:
        con.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--population", choices=("open", "all"), default="open")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlsm-checks-"))
    try:
        s = lc.make_project(root, None, lc.definitions(args.population))
        lc.load(s, args.rows, args.seed)
        st.say("mlsm train")
        run_train(s)
        target = s.project.dbt_dir / "target"
        best = None
        for i in range(args.runs):
            t0 = time.perf_counter()
            run_build(s)
            wall = time.perf_counter() - t0
            nodes = lc.dbt_nodes(target)
            checks = sum(n["execute_s"] for n in nodes if is_check(n))
            rest = sum(n["execute_s"] for n in nodes if not is_check(n))
            st.say(
                f"  build {i + 1}: {wall:.1f} s; node execute: checks {checks:.2f} s, "
                f"the rest {rest:.2f} s"
            )
            if best is None or wall < best[0]:
                best = (wall, checks, rest)
        with_bands, without_bands = placement_cost(s.project.warehouse, target, args.runs)
        wall, checks, rest = best
        bands = with_bands - without_bands
        rest_without = rest - bands
        added = checks + bands
        st.say(f"\n{args.rows:,} leads, population {args.population}, best of {args.runs}")
        st.say(f"{'':<44} {'seconds':>8}")
        st.say(f"{'mlsm build, wall':<44} {wall:8.2f}")
        st.say(f"{'check nodes (models + tests), execute':<44} {checks:8.2f}")
        st.say(
            f"{'scores with bands / without (CTAS)':<44} {with_bands:8.2f} / {without_bands:.2f}"
        )
        st.say(f"{'every other node, execute, bands removed':<44} {rest_without:8.2f}")
        st.say(
            f"added by checks and bands: {added:.2f} s = {added / rest_without:.1%} of the "
            f"nodes' work without them; {added / (wall - added):.1%} of the build's wall time "
            "without them (goal: at most 25%)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

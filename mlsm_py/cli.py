"""`mlsm` command line. Errors meant for users print one clear message and exit non-zero."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from mlsm_py.errors import MlsmError


def _project_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    here = Path.cwd() / "dbt_project"
    if (here / "dbt_project.yml").is_file():
        return here.resolve()
    # An editable install from a clone: the project sits beside the package.
    beside = Path(__file__).resolve().parents[1] / "dbt_project"
    if (beside / "dbt_project.yml").is_file():
        return beside
    raise MlsmError("no dbt project found: run from the repository root or pass --project-dir")


def _say(msg: str) -> None:
    print(msg, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from mlsm_py import pipeline
    from mlsm_py.demo.data import generate_leads, load_leads
    from models_py import MODELS, SUMMARIES

    t0 = time.perf_counter()
    p = pipeline.Project(
        _project_dir(args.project_dir),
        pipeline.warehouse_path(args.warehouse),
        MODELS,
        SUMMARIES,
    )
    _say(f"[1/6] generating {args.rows:,} synthetic leads (seed {args.seed})")
    table = generate_leads(args.rows, args.seed)
    _say(f"      warehouse: {p.warehouse}")
    with p.connect() as con:
        load_leads(con, table)
    _say("[2/6] dbt build: staging -> features -> input checks")
    pipeline.build_features(p)
    _say("[3/6] training on older leads, evaluating on the newest (time split with a gap)")
    fits = pipeline.train_all(p, _say)
    _say("[4/6] compiling to SQL and proving parity in the warehouse")
    compiled = pipeline.compile_all(p, fits, _say)
    records = pipeline.register(p, compiled)
    _say(
        f"      registered {len(records)} fits in mlsm_registry.fits; artifacts: {p.artifacts_dir}"
    )
    paths = pipeline.write_models(p, compiled)
    _say(f"      wrote {len(paths)} generated dbt files under {p.project_dir / 'models'}")
    _say("[5/6] dbt build: scores -> winners -> score checks -> published tables")
    outcome = pipeline.runner.build(p.project_dir, p.warehouse)
    _say(f"      dbt: {outcome.counts}")
    sql, rows = pipeline.top_leads(p, 10)
    _say("[6/6] top 10 leads by winning score (published.winners):")
    key = p.models[0].key
    _say(f"      {key:>10}  {'winning_model':<18} {'version':>7}  score")
    for r in rows:
        _say(
            f"      {r[key]:>10}  {r['winning_model']:<18} {r['winning_version']:>7}  "
            f"{r['score']:.4f}"
        )
    _say("\nThe SQL an analyst runs for this list:\n")
    _say(sql + ";")
    _say(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from mlsm_py import pipeline

    outcome = pipeline.runner.build(
        _project_dir(args.project_dir), pipeline.warehouse_path(args.warehouse)
    )
    _say(f"dbt build passed: {outcome.counts}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mlsm_py import verify
    from models_py import MODELS

    by_name = {m.name: m for m in MODELS}
    if args.model not in by_name:
        raise MlsmError(f"unknown model {args.model!r}; defined: {', '.join(sorted(by_name))}")
    if args.fuzz < 0:
        raise MlsmError("--fuzz must be 0 or more rows")
    result = verify.verify(
        by_name[args.model], verify.warehouse_path(args.warehouse), args.fuzz, args.seed, _say
    )
    return 0 if result.passed else 1


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mlsm", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--warehouse", help="DuckDB file (default: $MLSM_WAREHOUSE or warehouse/mlsm.duckdb)"
    )
    common.add_argument("--project-dir", help="dbt project (default: ./dbt_project)")
    demo = sub.add_parser("demo", parents=[common], help="run the end-to-end demo")
    demo.add_argument("--rows", type=int, default=100_000, help="synthetic leads (default 100000)")
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=cmd_demo)
    build = sub.add_parser("build", parents=[common], help="dbt build with a checked summary")
    build.set_defaults(func=cmd_build)
    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="re-run the parity gate for a registered fit, optionally on N fuzzed rows",
    )
    verify.add_argument("model", help="model name, as defined in models_py")
    verify.add_argument(
        "--fuzz", type=int, default=0, metavar="N", help="also check N generated rows (default 0)"
    )
    verify.add_argument("--seed", type=int, default=0, help="fuzz seed (default 0)")
    verify.set_defaults(func=cmd_verify)
    return ap


def main(argv: list[str] | None = None) -> int:
    # ColumnTransformer hands LightGBM a numpy array; names were checked one step earlier.
    warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
    args = parser().parse_args(argv)
    if getattr(args, "rows", 1000) < 1000:
        print("mlsm: error: --rows must be at least 1000", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except MlsmError as e:
        print(f"mlsm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`mlsm` command line: the model lifecycle on the project in the current directory (or
--project DIR). Errors meant for users print one line and exit non-zero; anything unexpected
prints one line too, with the traceback kept in the project's log file."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
import warnings
from pathlib import Path

from mlsm_py import __version__
from mlsm_py.errors import MlsmError


def _say(msg: str) -> None:
    print(msg, flush=True)


def _session(args: argparse.Namespace, actor: str | None = None):
    from mlsm_py import project
    from mlsm_py.flow.session import Session

    p = project.load(args.project, args.warehouse, args.target)
    s = Session(p, _say, verbose=args.verbose)
    if args.actor or actor:
        s.actor = args.actor or actor
    return s


def cmd_init(args: argparse.Namespace) -> int:
    from mlsm_py.demo.init import init

    root = init(Path(args.directory), args.rows)
    _say(f"created an mlsm project in {root}; next:\n  cd {root} && mlsm train && mlsm build")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mlsm_py.demo.run import run

    run(_session(args), args.rows, args.seed, args.replace_data)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mlsm_py.flow.lifecycle import run_train

    run_train(_session(args), args.models)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from mlsm_py.flow.build import run_build

    run_build(_session(args), full=args.full_refresh)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from mlsm_py.flow.lifecycle import run_retrain

    outcomes = run_retrain(_session(args, actor="factory"), args.propose, args.models)
    _say("summary:")
    _say(f"  {'model':<20} {'outcome':<9} {'metric':<20} {'champion':>9} {'challenger':>10}")
    for o in outcomes:
        if o.segment is not None:  # counted on the model's line above
            continue
        old = "" if o.old != o.old else f"{o.old:.4f}"
        new = "" if o.new != o.new else f"{o.new:.4f}"
        _say(f"  {o.model:<20} {o.outcome:<9} {o.metric:<20} {old:>9} {new:>10}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from mlsm_py.flow.aliases import status

    rows = status(_session(args))
    if args.json:
        _say(json.dumps(rows, indent=2, default=str))
        return 0
    _say(
        f"{'model':<18} {'ver':>3} {'status':<6} {'champion':<17} {'route':<6} {'ROC AUC':>7} "
        f"{'top10%':>6} {'parity':>8}  challenger        last decision"
    )
    for r in rows:
        m = r["metrics"]
        auc = f"{m['roc_auc']:.4f}" if "roc_auc" in m else "-"
        cap = f"{m['top_decile_capture']:.1%}" if "top_decile_capture" in m else "-"
        par = f"{r['parity_max_abs_diff']:.1e}" if r["parity_max_abs_diff"] is not None else "-"
        _say(
            f"{r['model']:<18} {r['version']:>3} {r['status']:<6} {r['champion'] or '-':<17} "
            f"{r['route'] or '-':<6} {auc:>7} {cap:>6} {par:>8}  "
            f"{(r['challengers'] or ['-'])[0]:<17} {r['last_decision'] or '-'}"
        )
    for r in rows:
        seg = r["segments"]
        if seg:
            lo, hi = seg["roc_auc_min"], seg["roc_auc_max"]
            spread = f", ROC AUC {lo:.4f} to {hi:.4f}" if lo is not None else ""
            gone = seg["skipped_last_run"]
            skipped = f"; skipped last run: {', '.join(gone)}" if gone else ""
            _say(
                f"  {r['model']}: {seg['fits']} segment fits by {'+'.join(seg['by'])}{spread}, "
                f"{seg['challengers']} challenger(s); the champion above is the global fit "
                f"(the fallback){skipped}"
            )
            if args.segments:
                for x in seg["rows"]:
                    auc = f"{x['roc_auc']:.4f}" if x["roc_auc"] is not None else "-"
                    _say(
                        f"    {x['segment']:<14} {x['champion'] or '-':<17} {auc:>7} "
                        f"{x['holdout_rows'] or 0:>8,} holdout  {x['challenger'] or '-':<17} "
                        f"{x['last_decision'] or '-'}"
                    )
    for r in rows:
        for line in r["stale"]:
            _say(f"  stale: {r['model']}: {line}")
    if rows and rows[0]["generated_files_out_of_date"]:
        files = ", ".join(rows[0]["generated_files_out_of_date"])
        _say(
            f"  generated dbt files out of date with the registry ({files}): `mlsm build` "
            "rewrites them"
        )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from mlsm_py.flow.aliases import promote

    if args.proposed:
        from mlsm_py.flow.aliases import promote_proposed

        if args.fit or args.segment:
            raise MlsmError("--proposed applies every open proposal; drop --fit / --segment")
        _say(promote_proposed(_session(args), args.model))
    else:
        _say(promote(_session(args), args.model, args.fit, args.segment))
    _say("  the next `mlsm build` scores with it")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from mlsm_py.flow.aliases import rollback

    _say(rollback(_session(args), args.model, args.segment))
    _say("  the next `mlsm build` scores with it")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from mlsm_py.flow.aliases import history

    rows = history(_session(args), args.model, args.segment)
    if args.json:
        _say(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        _say(f"no decisions recorded for {args.model}")
    for r in rows:
        _say(
            f"{r['decided_at']:%Y-%m-%d %H:%M:%S}  {r['outcome']:<11} {r['action']:<9} "
            f"by {r['actor']:<10} {r['from_fit'] or '-'} -> {r['to_fit'] or '-'}"
            + (f"  [segment {r['segment']}]" if r.get("segment") is not None else "")
        )
        _say(f"    {r['reason']}")
        by_metric: dict = {}
        for c in r["compared"]:
            by_metric.setdefault(c["metric"], {})[c["role"]] = c["value"]
        shown = [k for k in ("roc_auc", "top_decile_capture", "log_loss", "rmse") if k in by_metric]
        for k in shown:
            v = by_metric[k]
            old = f"{v['champion']:.4f}" if "champion" in v else "-"
            new = f"{v['challenger']:.4f}" if "challenger" in v else "-"
            _say(f"    {k}: champion {old}, challenger {new}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mlsm_py import verify

    if args.fuzz < 0:
        raise MlsmError("--fuzz must be 0 or more rows")
    s = _session(args)
    result = verify.verify(s, args.model, args.fuzz, args.seed, args.segment)
    return 0 if result.passed else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mlsm_py.flow import evaluate
    from mlsm_py.flow.lock import hold

    s = _session(args)
    s.require_warehouse()
    if not s.defs.summaries:
        raise MlsmError("the project defines no summary model to evaluate")
    with hold(s.project.state, "evaluate", s.project.target), s.registry() as con:
        _say("summary models on the holdout (the current champions), next to their members:")
        evaluate.report(s, con)
        _say("on realised outcomes (each record as first published, outcome since arrived):")
        if not evaluate.report(s, con, sample="realised"):
            _say("  no published record has an outcome yet")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mlsm_py.flow.lock import hold
    from mlsm_py.report import html

    s = _session(args)
    s.require_warehouse()
    with hold(s.project.state, "report", s.project.target):
        out = html.write(s, Path(args.out) if args.out else None)
    _say(f"report: {out}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from mlsm_py import dashboard, project

    p = project.load(args.project, args.warehouse, args.target)
    if p.target.kind != "duckdb":
        raise MlsmError(
            f"mlsm dashboard reads the DuckDB readers' copy; dbt target {p.target.name!r} is "
            f"{p.target.kind}: point a BI tool at published.* and monitoring.* there"
        )
    return dashboard.run(p.root, p.warehouse, args.host, args.port, args.verbose, _say)


def cmd_export(args: argparse.Namespace) -> int:
    from mlsm_py.flow.export import export
    from mlsm_py.flow.lock import hold

    s = _session(args)
    s.require_warehouse()
    lists = [sm.call_list.name for sm in s.defs.summaries if sm.call_list is not None]
    if args.call_list:
        if args.call_list not in lists:
            raise MlsmError(f"--call-list {args.call_list}: the project's call lists are {lists}")
        lists = [args.call_list]
    if not lists:
        raise MlsmError("no summary model declares a call list: there is no change feed")
    out = Path(args.dir) if args.dir else s.project.root / "exports"
    key = s.defs.models[0].key
    with hold(s.project.state, "export", s.project.target), s.registry() as con:
        for name in lists:
            done = export(con, name, key, out, args.since, args.format, args.overwrite)
            for e in done:
                if not e.written:
                    continue
                kinds = ("new", "updated", "removed")
                parts = ", ".join(f"{e.counts.get(c, 0):,} {c}" for c in kinds)
                _say(f"  {e.path.name}: {parts}")
            there = sum(not e.written for e in done)
            _say(
                f"{name}: {len(done) - there} file(s) written to {out}"
                + (f", {there} already there" if there else "")
            )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mlsm_py.serve import run

    run(_session(args), args.host, args.port, args.workers)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mlsm", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"mlsm {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", help="project directory (default: the current directory)")
    common.add_argument("--warehouse", help="DuckDB file (default: from the project config)")
    common.add_argument(
        "--target",
        help="dbt target of the project's profile: the warehouse (default: $MLSM_TARGET, "
        "else dbt_target in the project config, else the profile's own)",
    )
    common.add_argument("--actor", help="who is recorded in the audit rows (default: $USER)")
    common.add_argument("--verbose", action="store_true", help="show dbt's own output")

    def verb(name: str, fn, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=fn)
        return p

    init = sub.add_parser("init", help="create a small working project in DIR")
    init.add_argument("directory")
    init.add_argument("--rows", type=int, default=5000, help="sample leads (default 5000)")
    init.set_defaults(func=cmd_init)
    demo = verb("demo", cmd_demo, "the end-to-end demo: load leads, train, build, top leads")
    demo.add_argument("--rows", type=int, default=100_000, help="synthetic leads (default 100000)")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument(
        "--replace-data", action="store_true", help="regenerate raw.leads even if it holds data"
    )
    train = verb("train", cmd_train, "fit, gate and register models (first fit: champion)")
    train.add_argument("models", nargs="*", help="model names (default: all)")
    build = verb(
        "build", cmd_build, "score with the current champions, check, publish (no training)"
    )
    build.add_argument(
        "--full-refresh",
        action="store_true",
        help="score every record, not only those new or changed since the last publication",
    )
    retrain = verb("retrain", cmd_retrain, "the factory run: challenger vs champion, promote")
    retrain.add_argument("models", nargs="*", help="live model names (default: all live)")
    retrain.add_argument(
        "--propose", action="store_true", help="register and write challengers, promote nothing"
    )
    status = verb("status", cmd_status, "champions, challengers, metrics, staleness")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--segments", action="store_true", help="one line per segment fit of segmented models"
    )
    promote = verb("promote", cmd_promote, "make the challenger (or --fit ID) the champion")
    promote.add_argument("model")
    promote.add_argument("--fit", help="a registered fit id (default: the challenger)")
    promote.add_argument("--segment", help="one segment of a segmented model")
    promote.add_argument(
        "--proposed",
        action="store_true",
        help="apply every open proposal of the model (global fit and segments) at once",
    )
    rollback = verb("rollback", cmd_rollback, "back to the previous champion")
    rollback.add_argument("model")
    rollback.add_argument("--segment", help="one segment of a segmented model")
    history = verb("history", cmd_history, "a model's decisions, newest first")
    history.add_argument("model")
    history.add_argument("--segment", help="one segment's decisions only")
    history.add_argument("--json", action="store_true")
    report = verb("report", cmd_report, "one HTML file: curves, calibration, drift, scores")
    report.add_argument("--out", help="where to write it (default: reports/mlsm-report.html)")
    dashboard = verb("dashboard", cmd_dashboard, "a web page: top leads, models, drift (Streamlit)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    serve = verb("serve", cmd_serve, "a JSON API scoring records with the live champions")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes (default 1; up to the cores)"
    )
    export = verb(
        "export", cmd_export, "the call list's change feed as files: one per published run"
    )
    export.add_argument("--since", metavar="RUN", help="only runs published after this run id")
    export.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    export.add_argument("--dir", help="where to write the files (default: exports/)")
    export.add_argument("--call-list", help="one call list (default: every call list)")
    export.add_argument(
        "--overwrite", action="store_true", help="rewrite files already there (same bytes)"
    )
    verb("evaluate", cmd_evaluate, "summary models vs their members: holdout and realised")
    verify = verb("verify", cmd_verify, "re-run the parity gate on the champion fit")
    verify.add_argument("model")
    verify.add_argument(
        "--fuzz", type=int, default=0, metavar="N", help="also check N generated rows (default 0)"
    )
    verify.add_argument("--seed", type=int, default=0, help="fuzz seed (default 0)")
    verify.add_argument("--segment", help="a segment fit of a segmented model")
    return ap


def _log_file(args: argparse.Namespace) -> Path:
    root = Path(getattr(args, "project", None) or Path.cwd())
    return root.resolve() / "logs" / "mlsm.log"


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
    except KeyboardInterrupt:
        print("mlsm: interrupted; nothing was published", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the user gets one line, the log the traceback
        log = _log_file(args)
        log.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(filename=log, level=logging.ERROR, force=True)
        logging.getLogger("mlsm").error("%s\n%s", " ".join(sys.argv), traceback.format_exc())
        text = str(e).splitlines()[0] if str(e) else ""
        if "Could not set lock" in text:
            text = "the warehouse file is in use by another process (a running dbt build?)"
        print(f"mlsm: error: {type(e).__name__}: {text} (details in {log})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

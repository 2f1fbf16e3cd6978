"""Scoring throughput: Python scoring vs in-warehouse SQL scoring of the same fitted models.

mlsm's claim is that a model compiled to SQL scores inside DuckDB without a round trip through
Python. This script measures both routes on one synthetic warehouse, for every demo model in
`models_py.MODELS`, over all N rows of the feature relation `lead_features`:

python path   what a Python scoring job does: `artifacts.load` (sha256 + skops type check),
              read the key and input columns from DuckDB into pandas and convert them with
              `model_frame` ("read"), `predict_proba` ("predict"), write (key, score) back into
              a DuckDB table through Arrow ("write").
sql path      `CREATE OR REPLACE TABLE ... AS <to_sql(...)>` on the same DuckDB connection:
              parse, plan and execute of the compiled statement, scores written to a table.
plan          `EXPLAIN <to_sql(...)>`: DuckDB plans the statement without executing it, so this
              is the part of the SQL time that does not grow with the row count.
plain sum     `CREATE OR REPLACE TABLE ... AS SELECT key, <sum of the numeric inputs>`: the cost
              of one scan + one table write, the floor any in-warehouse scoring sits on.

Every timing is the best of two runs (time.perf_counter). DuckDB runs with `SET threads = 2`;
the demo's forest and LightGBM models predict with n_jobs=2, so both routes get two threads.
Both routes' scores are compared row by row afterwards (max |diff|), so the numbers are for
the same answer. The warehouse lives in a temporary directory unless --warehouse is given; the
project's own warehouse is never touched. dbt is not run (its start-up would dominate small
runs): the feature SQL is taken from the dbt model file with its two Jinja expressions replaced.

    python bench/score_throughput.py --rows 1000000 [--train-rows 100000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import ibis
import lightgbm
import pyarrow as pa
import sklearn
import sqlglot
from sqlglot import exp

from mlsm_py import pipeline
from mlsm_py.compile import to_sql
from mlsm_py.demo.data import generate_leads, load_leads
from mlsm_py.frames import model_frame
from mlsm_py.registry import artifacts
from mlsm_py.spec import Model
from mlsm_py.train.trainer import Fit, input_types, scores_of, train
from models_py import MODELS

ROOT = Path(__file__).resolve().parents[1]
FEATURES_FILE = ROOT / "dbt_project" / "models" / "features" / "lead_features.sql"
FEATURES = "lead_features"
# The features model reads the staging model. Staging only casts to the types raw.leads already
# has (generate_leads writes them) and lower()/trim()s categories that generate_leads already
# writes lower case and trimmed, so reading raw.leads directly yields the same relation.
JINJA = {
    "{{ ref('stg_leads__leads') }}": "raw.leads",
    "{{ mlsm.type_double() }}": "double",
}
THREADS = 2
RUNS = 2
PYTHON_TABLE = "score_python"
SQL_TABLE = "score_sql"
PLAIN_TABLE = "plain_sum"
ARROW_VIEW = "__bench_scores"
DIALECT = "duckdb"

T = TypeVar("T")


@dataclass
class PythonTiming:
    load_s: float
    read_s: float
    predict_s: float
    write_s: float

    @property
    def total_s(self) -> float:
        return self.load_s + self.read_s + self.predict_s + self.write_s


@dataclass
class ModelResult:
    model: str
    estimator: str
    rows: int
    train_rows: int
    roc_auc: float
    compile_s: float
    sql_chars: int
    python: PythonTiming
    sql_s: float
    plan_s: float
    plain_sum_s: float
    max_abs_diff: float

    @property
    def ratio_python_sql(self) -> float:
        return self.python.total_s / self.sql_s

    @property
    def ratio_sql_plain(self) -> float:
        return self.sql_s / self.plain_sum_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["python"]["total_s"] = self.python.total_s
        d["ratio_python_sql"] = self.ratio_python_sql
        d["ratio_sql_plain_sum"] = self.ratio_sql_plain
        return d


def say(msg: str) -> None:
    print(msg, flush=True)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def best_of(fn: Callable[[], float], label: str) -> float:
    """Run `fn` (which returns its own wall time) RUNS times; print each, return the best."""
    times = []
    for i in range(1, RUNS + 1):
        times.append(fn())
        say(f"    {label} run {i}/{RUNS}: {times[-1]:.3f} s")
    return min(times)


# -- SQL text ---------------------------------------------------------------------------------
def render(e: exp.Expression) -> str:
    return e.sql(dialect=DIALECT)


def ctas_over_text(target: str, select_sql: str) -> str:
    """CREATE OR REPLACE TABLE over a SELECT we did not build: to_sql output or the features file.

    The SELECT runs exactly as given (the brief's one exception to sqlglot-built SQL): parsing
    a multi-megabyte compiled statement back into sqlglot just to wrap it would change the text
    that is timed. The target name is still rendered by sqlglot.
    """
    return "CREATE OR REPLACE TABLE " + render(exp.to_table(target)) + " AS\n" + select_sql


def explain_over_text(select_sql: str) -> str:
    # sqlglot itself represents EXPLAIN as a Command holding the statement text.
    return "EXPLAIN " + select_sql


def ctas(target: str, query: exp.Query) -> str:
    return render(
        exp.Create(this=exp.to_table(target), kind="TABLE", replace=True, expression=query)
    )


def plain_sum_query(key: str, numeric: list[str]) -> exp.Select:
    terms = [exp.cast(exp.column(n), exp.DataType.build("double")) for n in numeric]
    total = terms[0]
    for t in terms[1:]:
        total = exp.Add(this=total, expression=t)
    return exp.select(exp.column(key), exp.alias_(total, "s")).from_(FEATURES)


def diff_query(key: str) -> exp.Select:
    p, s = exp.column("score", table="p"), exp.column("score", table="s")
    return (
        exp.select(
            exp.func("max", exp.Abs(this=exp.Sub(this=p, expression=s))),
            exp.func("count", exp.Star()),
        )
        .from_(exp.to_table(PYTHON_TABLE).as_("p"))
        .join(
            exp.to_table(SQL_TABLE).as_("s"),
            on=exp.column(key, table="p").eq(exp.column(key, table="s")),
        )
    )


# -- warehouse set-up -------------------------------------------------------------------------
def features_select() -> str:
    text = FEATURES_FILE.read_text()
    for jinja, sql in JINJA.items():
        if jinja not in text:
            raise SystemExit(f"{FEATURES_FILE} no longer contains {jinja}; update bench JINJA")
        text = text.replace(jinja, sql)
    if "{{" in text or "{%" in text:
        raise SystemExit(f"{FEATURES_FILE} has Jinja this benchmark does not replace")
    return text


def connect(path: Path) -> ibis.BaseBackend:
    con = ibis.duckdb.connect(str(path))
    raw = con.con
    setting = exp.EQ(this=exp.column("threads"), expression=exp.Literal.number(THREADS))
    raw.execute(render(exp.Set(expressions=[exp.SetItem(this=setting)])))
    check = exp.select(exp.func("current_setting", exp.Literal.string("threads")))
    threads = raw.execute(render(check)).fetchone()[0]
    if int(threads) != THREADS:
        raise SystemExit(f"DuckDB runs {threads} threads after SET threads = {THREADS}")
    return con


def build_warehouse(con: ibis.BaseBackend, rows: int) -> None:
    table, gen_s = timed(lambda: generate_leads(rows))
    say(f"  generated {rows:,} leads in {gen_s:.1f} s")
    _, load_s = timed(lambda: load_leads(con, table))
    say(f"  loaded raw.leads in {load_s:.1f} s")
    _, feat_s = timed(lambda: con.con.execute(ctas_over_text(FEATURES, features_select())))
    say(f"  built {FEATURES} from {FEATURES_FILE.relative_to(ROOT)} in {feat_s:.1f} s")


def sample_step(rows: int, train_rows: int) -> int:
    return max(1, rows // train_rows)


def training_sample(con: ibis.BaseBackend, rows: int, train_rows: int) -> pa.Table:
    """Every k-th lead: ids grow with time, so the sample spans the whole year and the models'
    time split (60-day holdout, 14-day gap) keeps both windows populated."""
    step = sample_step(rows, train_rows)
    q = exp.select(exp.Star()).from_(FEATURES).order_by(exp.column("lead_id"))
    if step > 1:
        mod = exp.Mod(this=exp.column("lead_id"), expression=exp.Literal.number(step))
        q = q.where(mod.eq(exp.Literal.number(0)))
    return con.con.execute(render(q)).fetch_arrow_table()


def train_models(sample: pa.Table, models: list[Model]) -> list[Fit]:
    # train() reads model.features through ibis; an in-memory connection holds only the sample.
    mem = ibis.duckdb.connect()
    try:
        mem.create_table(FEATURES, sample)
        fits = []
        for m in models:
            fit, fit_s = timed(lambda m=m: train(mem, m))
            say(
                f"  {m.name}: {fit.train_rows:,} train rows, ROC AUC "
                f"{fit.metrics['roc_auc']:.4f}, {fit_s:.1f} s"
            )
            fits.append(fit)
        return fits
    finally:
        mem.disconnect()


# -- the two scoring routes -------------------------------------------------------------------
def python_path_once(raw: Any, model: Model, path: Path, sha: str) -> PythonTiming:
    types = input_types(model)
    read_q = exp.select(exp.column(model.key), *(exp.column(n) for n in types)).from_(FEATURES)

    est, load_s = timed(lambda: artifacts.load(path, sha))

    def read() -> tuple[Any, Any]:
        df = raw.execute(render(read_q)).df()
        return df[model.key].to_numpy(), model_frame(df, types)

    (keys, X), read_s = timed(read)
    scores, predict_s = timed(lambda: scores_of(est, X))

    def write() -> None:
        tbl = pa.table({model.key: keys, "score": scores})
        raw.register(ARROW_VIEW, tbl)
        try:
            query = exp.select(exp.Star()).from_(ARROW_VIEW)
            raw.execute(ctas(PYTHON_TABLE, query))
        finally:
            raw.unregister(ARROW_VIEW)

    _, write_s = timed(write)
    return PythonTiming(load_s, read_s, predict_s, write_s)


def python_path(raw: Any, model: Model, path: Path, sha: str) -> PythonTiming:
    runs = []
    for i in range(1, RUNS + 1):
        t = python_path_once(raw, model, path, sha)
        say(
            f"    python run {i}/{RUNS}: {t.total_s:.3f} s (load {t.load_s:.3f}, read "
            f"{t.read_s:.3f}, predict {t.predict_s:.3f}, write {t.write_s:.3f})"
        )
        runs.append(t)
    return min(runs, key=lambda t: t.total_s)


def sql_path(raw: Any, compiled: str) -> float:
    stmt = ctas_over_text(SQL_TABLE, compiled)
    return best_of(lambda: timed(lambda: raw.execute(stmt))[1], "sql")


def plan_time(raw: Any, compiled: str) -> float:
    stmt = explain_over_text(compiled)
    return best_of(lambda: timed(lambda: raw.execute(stmt).fetchall())[1], "plan (EXPLAIN)")


def plain_sum(raw: Any, key: str, numeric: list[str]) -> float:
    stmt = ctas(PLAIN_TABLE, plain_sum_query(key, numeric))
    return best_of(lambda: timed(lambda: raw.execute(stmt))[1], "plain sum")


def max_diff(raw: Any, key: str, rows: int) -> float:
    diff, matched = raw.execute(render(diff_query(key))).fetchone()
    if matched != rows:
        raise SystemExit(f"python and SQL score tables join on {matched:,} of {rows:,} rows")
    return float(diff)


# -- report -----------------------------------------------------------------------------------
def header(rows: int, train_rows: int) -> list[str]:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    step = sample_step(rows, train_rows)
    sample = f"all {rows:,} leads" if step == 1 else f"{rows // step:,} leads (every {step}th)"
    return [
        f"score throughput: {rows:,} rows scored; models trained on {sample}, time split applied",
        f"duckdb {duckdb.__version__} (SET threads = {THREADS}), scikit-learn "
        f"{sklearn.__version__}, lightgbm {lightgbm.__version__}, sqlglot {sqlglot.__version__}, "
        f"python {platform.python_version()}",
        f"machine: {cores} cores ({usable} usable), {platform.machine()}, {platform.system()}",
        f"best of {RUNS} runs each; python s = load + read (incl. model_frame) + predict + write",
    ]


COLUMNS = [
    ("model", "<18", lambda r: r.model),
    ("rows", ">9", lambda r: f"{r.rows:,}"),
    ("load s", ">7", lambda r: f"{r.python.load_s:.3f}"),
    ("read s", ">7", lambda r: f"{r.python.read_s:.3f}"),
    ("predict s", ">9", lambda r: f"{r.python.predict_s:.3f}"),
    ("write s", ">7", lambda r: f"{r.python.write_s:.3f}"),
    ("python s", ">8", lambda r: f"{r.python.total_s:.3f}"),
    ("sql s", ">7", lambda r: f"{r.sql_s:.3f}"),
    ("plan s", ">7", lambda r: f"{r.plan_s:.3f}"),
    ("python/sql", ">10", lambda r: f"{r.ratio_python_sql:.2f}"),
    ("sql/plain", ">9", lambda r: f"{r.ratio_sql_plain:.1f}"),
    ("max|diff|", ">9", lambda r: f"{r.max_abs_diff:.1e}"),
]


def table(results: list[ModelResult]) -> list[str]:
    lines = ["  ".join(f"{name:{fmt}}" for name, fmt, _ in COLUMNS)]
    lines.append("-" * len(lines[0]))
    for r in results:
        lines.append("  ".join(f"{get(r):{fmt}}" for _, fmt, get in COLUMNS))
    return lines


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="leads to generate and score")
    ap.add_argument(
        "--warehouse", help="DuckDB file to (re)build (default: one in a temporary directory)"
    )
    ap.add_argument("--train-rows", type=int, default=100_000, help="training sample size")
    ap.add_argument("--out", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)
    if args.rows < 1000:
        ap.error("--rows must be at least 1000 (the models' time split needs a year of leads)")
    if args.train_rows < 1000:
        ap.error("--train-rows must be at least 1000")
    if args.warehouse and Path(args.warehouse).resolve() == pipeline.warehouse_path():
        ap.error("--warehouse is the project's warehouse; the benchmark overwrites raw.leads")
    return args


def score_model(raw: Any, fit: Fit, workdir: Path, rows: int, plain_s: float) -> ModelResult:
    m = fit.model
    path = workdir / "artifacts" / f"{m.name}.skops"
    sha = artifacts.save(fit.estimator, path)
    compiled, compile_s = timed(lambda: to_sql(fit.estimator, FEATURES, key=m.key))
    say(f"  {m.name}: to_sql {compile_s:.1f} s, {len(compiled):,} characters of SQL")
    py = python_path(raw, m, path, sha)
    sql_s = sql_path(raw, compiled)
    plan_s = plan_time(raw, compiled)
    diff = max_diff(raw, m.key, rows)
    say(f"    python/sql {py.total_s / sql_s:.2f}, max |python - sql| {diff:.1e}")
    return ModelResult(
        model=m.name,
        estimator=fit.estimator_name,
        rows=rows,
        train_rows=fit.train_rows,
        roc_auc=float(fit.metrics["roc_auc"]),
        compile_s=compile_s,
        sql_chars=len(compiled),
        python=py,
        sql_s=sql_s,
        plan_s=plan_s,
        plain_sum_s=plain_s,
        max_abs_diff=diff,
    )


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[ModelResult], float]:
    warehouse = Path(args.warehouse).resolve() if args.warehouse else workdir / "bench.duckdb"
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    say(f"[1/4] warehouse {warehouse}")
    con = connect(warehouse)
    try:
        build_warehouse(con, args.rows)
        say(f"[2/4] training {len(MODELS)} models (time split on the sample)")
        fits = train_models(training_sample(con, args.rows, args.train_rows), MODELS)
        raw = con.con
        say("[3/4] baseline: one scan + sum of the numeric inputs + table write")
        numeric = [n for n, t in input_types(MODELS[0]).items() if t == "double"]
        plain_s = plain_sum(raw, MODELS[0].key, numeric)
        say("[4/4] scoring every model both ways")
        results = [score_model(raw, f, workdir, args.rows, plain_s) for f in fits]
        return results, plain_s
    finally:
        con.disconnect()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    head = header(args.rows, args.train_rows)
    for line in head:
        say(line)
    with tempfile.TemporaryDirectory(prefix="mlsm_bench_") as tmp:
        results, plain_s = run(args, Path(tmp))
    elapsed = time.perf_counter() - t0
    say("")
    for line in [*head, f"plain sum baseline: {plain_s:.3f} s", *table(results)]:
        say(line)
    say(f"total runtime {elapsed:.1f} s")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "header": head,
            "rows": args.rows,
            "train_rows": args.train_rows,
            "threads": THREADS,
            "plain_sum_s": plain_s,
            "total_runtime_s": elapsed,
            "results": [r.to_dict() for r in results],
        }
        out.write_text(json.dumps(doc, indent=2) + "\n")
        say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

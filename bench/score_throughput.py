"""Scoring throughput: Python scoring vs in-warehouse scoring of the same fitted models.

mlsm scores every model inside the warehouse, by SQL or by a dbt Python model, whichever
`mlsm_py.compile.path.choose_path` expects to be faster. This script measures every route on one
synthetic warehouse, for every demo model in `models_py.MODELS` plus a 200-tree and a 1,000-tree
LightGBM (EXTRA_MODELS), over all N rows of the feature relation `lead_features`:

native        what a Python scoring job outside the warehouse does: `artifacts.load` (sha256 +
              skops type check), read the key and input columns from DuckDB into pandas and
              convert them with `model_frame` ("read"), `predict_proba` ("predict"), write
              (key, score) back into a DuckDB table through Arrow ("write"). The baseline.
python model  the dbt Python-model path: `artifacts.load` + `pyscore.score_relation` over the
              DuckDB relation (Arrow batches, no pandas copy of the table) + write back.
naive sql     the model as one expression: every tree inlined into one left-deep sum (m2cgen
              style), run as a user would: DuckDB's default max_expression_depth (1000)
              refuses a 1,000-tree sum (the table says so); stopped after --naive-timeout
              seconds. (Raising the limit does not help: the 1,000-tree statement then did not
              finish binding in 6 minutes, and DuckDB's interrupt is not checked there.)
sql           `CREATE OR REPLACE TABLE ... AS <SQL>`: the SQL `mlsm train` compiles, under the
              model's `fields` contract (docs/decisions/0024), in the emitter's layout
              (docs/decisions/0013-large-ensemble-layout.md); parse, plan and execute.
plan          `EXPLAIN <SQL>`: DuckDB plans the statement without executing it.
chosen        the route `choose_path` picks (sql or python model) and its time; a close call is
              measured on the fit's holdout by `flow.probe`, as `mlsm train` does.
plain sum     `CREATE OR REPLACE TABLE ... AS SELECT key, <sum of the numeric inputs>`: one scan
              + one table write, the floor any in-warehouse scoring sits on.

Every timing is the best of --runs runs (time.perf_counter). DuckDB runs with `SET threads = 2`;
the forest, LightGBM and XGBoost models predict with n_jobs=2 (histogram boosting
uses OpenMP's default, the 2 cores), so every route gets two threads. Scores of
every route are compared row by row with the native ones (max |diff|), so the numbers are for
the same answer. The warehouse lives in a temporary directory unless --warehouse is given; the
project's own warehouse is never touched. dbt is not run (its start-up would dominate small
runs): the feature SQL is taken from the dbt model file with its two Jinja expressions replaced.

--data adds the generated data sets of bench/datasets.py (numeric20, mixed60), every family
with library defaults, and the logistic regression's hand-written floor (bench/_shapes.py).

    python bench/score_throughput.py --rows 1000000 [--train-rows 100000] [--runs 2]
        [--models lead_logreg,lgbm200] [--naive-timeout 300] [--out results.json]
        [--data demo,numeric20,mixed60] [--shape-models logreg,lgbm200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import lightgbm
import pyarrow as pa
import sklearn
import sqlglot
import xgboost
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sqlglot import exp
from xgboost import XGBClassifier

from mlsm_py import project, pyscore
from mlsm_py.compile import ast
from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.compile.layout import Layout
from mlsm_py.compile.path import choose_path
from mlsm_py.demo.data import generate_leads, load_leads
from mlsm_py.errors import MlsmError
from mlsm_py.estimator import input_types, score_vector
from mlsm_py.flow import probe
from mlsm_py.flow.compiled import assemble_for
from mlsm_py.frames import model_frame
from mlsm_py.parity.gate import input_types as gate_types
from mlsm_py.registry import artifacts
from mlsm_py.spec import Model
from mlsm_py.train.trainer import Fit, train
from models_py import MODELS
from models_py.leads import lgbm

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
PYMODEL_TABLE = "score_python_model"
SQL_TABLE = "score_sql"
NAIVE_TABLE = "score_naive"
PLAIN_TABLE = "plain_sum"
ARROW_VIEW = "__bench_scores"
PLAIN_ALL_S = float("nan")  # set by run(): the plain sum over every input column
DIALECT = "duckdb"

T = TypeVar("T")


def _variant(m: Model, name: str, **params: Any) -> Model:
    est = clone(m.estimator)
    est.set_params(**params)
    return dataclasses.replace(m, name=name, estimator=est)


# Beside the demo models: the families the demo does not use (XGBoost, scikit-learn's histogram
# boosting) and two large LightGBM ensembles. Same columns and split as the demo's LightGBM.
EXTRA_MODELS = [
    _variant(
        lgbm,
        "xgb100",
        model=XGBClassifier(
            n_estimators=100, max_depth=6, learning_rate=0.1, random_state=7, n_jobs=2
        ),
    ),
    _variant(
        lgbm,
        "hgb100",
        model=HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=31, random_state=7),
    ),
    _variant(lgbm, "lgbm200", model__n_estimators=200),
    _variant(
        lgbm,
        "lgbm1000",
        model__n_estimators=1000,
        model__max_depth=6,
        model__num_leaves=64,
        model__learning_rate=0.02,
    ),
]


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
    trees: int
    compile_s: float
    sql_chars: int
    python: PythonTiming
    python_model_s: float
    naive_s: float | None  # None: stopped at the timeout (naive_error says so) or failed
    naive_error: str | None
    sql_s: float
    plan_s: float
    plain_sum_s: float
    chosen_path: str
    chosen_reason: str
    sql_max_abs_diff: float
    python_model_max_abs_diff: float

    @property
    def chosen_s(self) -> float:
        return self.sql_s if self.chosen_path == "sql" else self.python_model_s

    @property
    def ratio_native_sql(self) -> float:
        return self.python.total_s / self.sql_s

    @property
    def ratio_native_python_model(self) -> float:
        return self.python.total_s / self.python_model_s

    @property
    def ratio_native_chosen(self) -> float:
        """Above 1.0: the chosen in-warehouse route beats native Python scoring."""
        return self.python.total_s / self.chosen_s

    @property
    def ratio_sql_plain(self) -> float:
        return self.sql_s / self.plain_sum_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["python"]["total_s"] = self.python.total_s
        d["chosen_s"] = self.chosen_s
        d["ratio_native_sql"] = self.ratio_native_sql
        d["ratio_native_python_model"] = self.ratio_native_python_model
        d["ratio_native_chosen"] = self.ratio_native_chosen
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


def plain_sum_query(key: str, numeric: list[str], text: list[str] = ()) -> exp.Select:
    """key + the sum of the numeric columns (and of the lengths of the text columns: the
    cheapest per-row work that still reads them)."""
    terms = [exp.cast(exp.column(n), exp.DataType.build("double")) for n in numeric]
    terms += [exp.Length(this=exp.column(n)) for n in text]
    total = terms[0]
    for t in terms[1:]:
        total = exp.Add(this=total, expression=t)
    return exp.select(exp.column(key), exp.alias_(total, "s")).from_(FEATURES)


def diff_query(key: str, other: str) -> exp.Select:
    p, s = exp.column("score", table="p"), exp.column("score", table="s")
    return (
        exp.select(
            exp.func("max", exp.Abs(this=exp.Sub(this=p, expression=s))),
            exp.func("count", exp.Star()),
        )
        .from_(exp.to_table(PYTHON_TABLE).as_("p"))
        .join(
            exp.to_table(other).as_("s"),
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


def connect(path: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (in memory without `path`) running THREADS threads."""
    raw = duckdb.connect(str(path) if path is not None else ":memory:")
    setting = exp.EQ(this=exp.column("threads"), expression=exp.Literal.number(THREADS))
    raw.execute(render(exp.Set(expressions=[exp.SetItem(this=setting)])))
    check = exp.select(exp.func("current_setting", exp.Literal.string("threads")))
    threads = raw.execute(render(check)).fetchone()[0]
    if int(threads) != THREADS:
        raise SystemExit(f"DuckDB runs {threads} threads after SET threads = {THREADS}")
    return raw


def build_warehouse(con: duckdb.DuckDBPyConnection, rows: int) -> None:
    table, gen_s = timed(lambda: generate_leads(rows))
    say(f"  generated {rows:,} leads in {gen_s:.1f} s")
    _, load_s = timed(lambda: load_leads(con, table))
    say(f"  loaded raw.leads in {load_s:.1f} s")
    _, feat_s = timed(lambda: con.execute(ctas_over_text(FEATURES, features_select())))
    say(f"  built {FEATURES} from {FEATURES_FILE.relative_to(ROOT)} in {feat_s:.1f} s")


def sample_step(rows: int, train_rows: int) -> int:
    return max(1, rows // train_rows)


def training_sample(con: duckdb.DuckDBPyConnection, rows: int, train_rows: int) -> pa.Table:
    """Every k-th lead: ids grow with time, so the sample spans the whole year and the models'
    time split (60-day holdout, 14-day gap) keeps both windows populated."""
    step = sample_step(rows, train_rows)
    q = exp.select(exp.Star()).from_(FEATURES).order_by(exp.column("lead_id"))
    if step > 1:
        mod = exp.Mod(this=exp.column("lead_id"), expression=exp.Literal.number(step))
        q = q.where(mod.eq(exp.Literal.number(0)))
    return con.execute(render(q)).fetch_arrow_table()


def train_models(sample: pa.Table, models: list[Model]) -> list[Fit]:
    # train() reads model.features from the connection it is given; an in-memory one holds only
    # the sample.
    mem = sample_connection(sample)
    try:
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
        mem.close()


def sample_connection(sample: pa.Table) -> duckdb.DuckDBPyConnection:
    mem = connect()
    mem.register(ARROW_VIEW, sample)
    try:
        mem.execute(ctas(FEATURES, exp.select(exp.Star()).from_(ARROW_VIEW)))
    finally:
        mem.unregister(ARROW_VIEW)
    return mem


# -- the two scoring routes -------------------------------------------------------------------
def python_path_once(raw: Any, model: Model, path: Path, sha: str) -> PythonTiming:
    types = input_types(model.fields)
    read_q = exp.select(exp.column(model.key), *(exp.column(n) for n in types)).from_(FEATURES)

    est, load_s = timed(lambda: artifacts.load(path, sha))

    def read() -> tuple[Any, Any]:
        df = raw.execute(render(read_q)).df()
        return df[model.key].to_numpy(), model_frame(df, types)

    (keys, X), read_s = timed(read)
    scores, predict_s = timed(lambda: score_vector(est, X))

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
            f"    native run {i}/{RUNS}: {t.total_s:.3f} s (load {t.load_s:.3f}, read "
            f"{t.read_s:.3f}, predict {t.predict_s:.3f}, write {t.write_s:.3f})"
        )
        runs.append(t)
    return min(runs, key=lambda t: t.total_s)


def python_model_once(
    raw: Any,
    model: Model,
    path: Path,
    sha: str,
    relation: Any = None,
    constants: dict[str, str | int] | None = None,
) -> float:
    """What the generated dbt Python model does: load the checked artifact, score the relation
    (default: all of FEATURES) in Arrow batches, and the table dbt-duckdb writes from the
    returned Arrow table. bench/lifecycle.py passes the model's population and the constant
    columns the generated model adds, to time exactly what `mlsm build` runs."""

    def go() -> None:
        est = artifacts.load(path, sha)
        rel = raw.table(FEATURES) if relation is None else relation
        scored = pyscore.score_relation(est, rel, model.key, constants=constants)
        raw.register(ARROW_VIEW, scored)
        try:
            raw.execute(ctas(PYMODEL_TABLE, exp.select(exp.Star()).from_(ARROW_VIEW)))
        finally:
            raw.unregister(ARROW_VIEW)

    return timed(go)[1]


def python_model_path(raw: Any, model: Model, path: Path, sha: str, **kwargs: Any) -> float:
    """Best of RUNS; `kwargs`: python_model_once's relation and constants."""
    return best_of(lambda: python_model_once(raw, model, path, sha, **kwargs), "python model")


class NaiveEmitter(SqlEmitter):
    """Every tree inlined where the sum reads it: the whole model as one expression."""

    # `state` is the emitter's own per-statement state, passed through untouched.
    def visit_IdExpr(self, node: ast.IdExpr, state: Any) -> exp.Expression:
        if node.to_reuse and isinstance(node.expr, ast.IfExpr):
            return self._visit(node.expr, state)
        return super().visit_IdExpr(node, state)


NAIVE_LAYOUT = Layout(sum_chunk=None, null_routing=False, merge_lookups=False)


def naive_sql(estimator: Any, key: str) -> str:
    return NaiveEmitter("duckdb", NAIVE_LAYOUT).render(assemble(estimator), FEATURES, key)


def interruptible(raw: Any, stmt: str, timeout: float) -> float | None:
    """Wall time of `stmt`, or None if DuckDB was interrupted after `timeout` seconds."""
    timer = threading.Timer(timeout, raw.interrupt)
    timer.start()
    try:
        return timed(lambda: raw.execute(stmt))[1]
    except duckdb.InterruptException:
        return None
    finally:
        timer.cancel()


def naive_path(raw: Any, compiled: str, timeout: float) -> tuple[float | None, str | None]:
    """Best of RUNS, or the first failure: a timeout or DuckDB's own refusal."""
    stmt = ctas_over_text(NAIVE_TABLE, compiled)
    times = []
    for i in range(1, RUNS + 1):
        try:
            t = interruptible(raw, stmt, timeout)
        except duckdb.Error as e:
            first = str(e).splitlines()[0]
            say(f"    naive sql: {type(e).__name__}: {first[:120]}")
            return None, "depth > 1000" if "expression depth" in first else type(e).__name__
        if t is None:
            say(f"    naive sql run {i}/{RUNS}: stopped after {timeout:.0f} s")
            return None, f"> {timeout:.0f} s"
        say(f"    naive sql run {i}/{RUNS}: {t:.3f} s")
        times.append(t)
    return min(times), None


def sql_path(raw: Any, compiled: str) -> float:
    stmt = ctas_over_text(SQL_TABLE, compiled)
    return best_of(lambda: timed(lambda: raw.execute(stmt))[1], "sql")


def plan_time(raw: Any, compiled: str) -> float:
    stmt = explain_over_text(compiled)
    return best_of(lambda: timed(lambda: raw.execute(stmt).fetchall())[1], "plan (EXPLAIN)")


def plain_sum(raw: Any, key: str, numeric: list[str], text: list[str] = ()) -> float:
    stmt = ctas(PLAIN_TABLE, plain_sum_query(key, numeric, text))
    label = "plain sum of every input" if text else "plain sum"
    return best_of(lambda: timed(lambda: raw.execute(stmt))[1], label)


def max_diff(raw: Any, key: str, rows: int, other: str) -> float:
    diff, matched = raw.execute(render(diff_query(key, other))).fetchone()
    if matched != rows:
        raise SystemExit(f"native and {other} score tables join on {matched:,} of {rows:,} rows")
    return float(diff)


def tree_count(estimator: Any) -> int:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "booster_"):
        return int(final.booster_.num_trees())
    if hasattr(final, "get_booster"):
        return len(final.get_booster().get_dump())
    if hasattr(final, "_predictors"):  # HistGradientBoosting: trees per iteration x iterations
        return sum(len(trees) for trees in final._predictors)
    return len(getattr(final, "estimators_", [])) or (1 if hasattr(final, "tree_") else 0)


# -- report -----------------------------------------------------------------------------------
def header(rows: int, train_rows: int) -> list[str]:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    step = sample_step(rows, train_rows)
    sample = f"all {rows:,} leads" if step == 1 else f"{rows // step:,} leads (every {step}th)"
    return [
        f"score throughput: {rows:,} rows scored; models trained on {sample}, time split applied",
        f"duckdb {duckdb.__version__} (SET threads = {THREADS}), scikit-learn "
        f"{sklearn.__version__}, lightgbm {lightgbm.__version__}, xgboost {xgboost.__version__}, "
        f"sqlglot {sqlglot.__version__}, "
        f"python {platform.python_version()}",
        f"machine: {cores} cores ({usable} usable), {platform.machine()}, {platform.system()}",
        f"best of {RUNS} runs each; native s = load + read (incl. model_frame) + predict + "
        "write; py-model s = load + pyscore.score_relation + write",
    ]


def _opt(x: float | None, err: str | None) -> str:
    return f"{x:.2f}" if x is not None else (err or "-")


COLUMNS = [
    ("model", "<16", lambda r: r.model),
    ("trees", ">5", lambda r: str(r.trees)),
    ("native s", ">8", lambda r: f"{r.python.total_s:.2f}"),
    ("(predict)", ">9", lambda r: f"{r.python.predict_s:.2f}"),
    ("py-model s", ">10", lambda r: f"{r.python_model_s:.2f}"),
    ("naive sql s", ">11", lambda r: _opt(r.naive_s, r.naive_error)),
    ("sql s", ">7", lambda r: f"{r.sql_s:.2f}"),
    ("plan s", ">6", lambda r: f"{r.plan_s:.3f}"),
    ("chosen", ">7", lambda r: "sql" if r.chosen_path == "sql" else "py-model"),
    ("native/sql", ">10", lambda r: f"{r.ratio_native_sql:.2f}"),
    ("native/py-model", ">15", lambda r: f"{r.ratio_native_python_model:.2f}"),
    ("native/chosen", ">13", lambda r: f"{r.ratio_native_chosen:.2f}"),
    ("sql/plain", ">9", lambda r: f"{r.ratio_sql_plain:.1f}"),
    ("max|diff| sql", ">13", lambda r: f"{r.sql_max_abs_diff:.1e}"),
    ("py-model", ">8", lambda r: f"{r.python_model_max_abs_diff:.1e}"),
]


def table(results: list[ModelResult]) -> list[str]:
    lines = ["  ".join(f"{name:{fmt}}" for name, fmt, _ in COLUMNS)]
    lines.append("-" * len(lines[0]))
    for r in results:
        lines.append("  ".join(f"{get(r):{fmt}}" for _, fmt, get in COLUMNS))
    return lines


# -- main -------------------------------------------------------------------------------------
ALL_MODELS = [*MODELS, *EXTRA_MODELS]


def project_warehouse() -> Path | None:
    """The repository's own warehouse (as `mlsm` resolves it), which the benchmark must not
    overwrite; None if the repository's project config cannot be read."""
    try:
        return project.load(ROOT).warehouse
    except MlsmError:
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="leads to generate and score")
    ap.add_argument(
        "--warehouse", help="DuckDB file to (re)build (default: one in a temporary directory)"
    )
    ap.add_argument("--train-rows", type=int, default=100_000, help="training sample size")
    ap.add_argument("--runs", type=int, default=RUNS, help="runs per timing (best is kept)")
    ap.add_argument(
        "--models",
        default=",".join(m.name for m in ALL_MODELS),
        help="comma-separated subset of the models",
    )
    ap.add_argument(
        "--naive-timeout",
        type=float,
        default=300.0,
        help="seconds before a naive single-expression statement is interrupted",
    )
    ap.add_argument("--out", help="also write the results as JSON to this file")
    ap.add_argument(
        "--data",
        default="demo,numeric20,mixed60",
        help="data sets: demo (the demo's leads and models) and the generated shapes of "
        "bench/datasets.py (numeric20, mixed60), each with every family at library defaults",
    )
    ap.add_argument(
        "--shape-models", default="", help="comma-separated subset of the generated sets' models"
    )
    args = ap.parse_args(argv)
    args.data = [d for d in args.data.split(",") if d]
    if unknown := [d for d in args.data if d not in ("demo", "numeric20", "mixed60")]:
        ap.error(f"unknown data sets {unknown}; known: demo, numeric20, mixed60")
    if args.rows < 1000:
        ap.error("--rows must be at least 1000 (the models' time split needs a year of leads)")
    if args.train_rows < 1000:
        ap.error("--train-rows must be at least 1000")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.warehouse and Path(args.warehouse).resolve() == project_warehouse():
        ap.error("--warehouse is the project's warehouse; the benchmark overwrites raw.leads")
    known = {m.name for m in ALL_MODELS}
    args.models = [n for n in args.models.split(",") if n]
    if unknown := [n for n in args.models if n not in known]:
        ap.error(f"unknown models {unknown}; known: {', '.join(sorted(known))}")
    return args


def score_model(
    raw: Any, fit: Fit, workdir: Path, rows: int, plain_s: float, naive_timeout: float
) -> ModelResult:
    m = fit.model
    path = workdir / "artifacts" / f"{m.name}.skops"
    sha = artifacts.save(fit.estimator, path)
    # Compiled as `mlsm train` compiles it: under the model's fields contract, the route chosen
    # with the close-call probe on the fit's holdout.
    assembled = assemble_for(m, fit.estimator)
    compiled, compile_s = timed(lambda: SqlEmitter("duckdb").render(assembled, FEATURES, m.key))
    holdout = fit.holdout.X
    choice = choose_path(
        fit.estimator,
        assembled,
        lambda: probe.measure(
            fit.estimator, assembled, raw, holdout, gate_types(assembled, holdout)
        ),
    )
    trees = tree_count(fit.estimator)
    say(
        f"  {m.name}: {trees} trees, to_sql {compile_s:.1f} s, {len(compiled):,} characters; "
        f"choose_path: {choice.path} ({choice.reason})"
    )
    py = python_path(raw, m, path, sha)
    pymodel_s = python_model_path(raw, m, path, sha)
    pymodel_diff = max_diff(raw, m.key, rows, PYMODEL_TABLE)
    sql_s = sql_path(raw, compiled)
    plan_s = plan_time(raw, compiled)
    sql_diff = max_diff(raw, m.key, rows, SQL_TABLE)
    naive_s, naive_error = naive_path(raw, naive_sql(fit.estimator, m.key), naive_timeout)
    say(
        f"    native/sql {py.total_s / sql_s:.2f}, native/python-model "
        f"{py.total_s / pymodel_s:.2f}; max |native - sql| {sql_diff:.1e}, "
        f"|native - python model| {pymodel_diff:.1e}"
    )
    return ModelResult(
        model=m.name,
        estimator=fit.estimator_name,
        rows=rows,
        train_rows=fit.train_rows,
        roc_auc=float(fit.metrics["roc_auc"]),
        trees=trees,
        compile_s=compile_s,
        sql_chars=len(compiled),
        python=py,
        python_model_s=pymodel_s,
        naive_s=naive_s,
        naive_error=naive_error,
        sql_s=sql_s,
        plan_s=plan_s,
        plain_sum_s=plain_s,
        chosen_path=choice.path,
        chosen_reason=choice.reason,
        sql_max_abs_diff=sql_diff,
        python_model_max_abs_diff=pymodel_diff,
    )


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[ModelResult], float]:
    warehouse = Path(args.warehouse).resolve() if args.warehouse else workdir / "bench.duckdb"
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    models = [m for m in ALL_MODELS if m.name in args.models]
    say(f"[1/4] warehouse {warehouse}")
    raw = connect(warehouse)
    try:
        build_warehouse(raw, args.rows)
        say(f"[2/4] training {len(models)} models (time split on the sample)")
        fits = train_models(training_sample(raw, args.rows, args.train_rows), models)
        say("[3/4] baseline: one scan + sum of the numeric inputs + table write")
        numeric = [n for n, t in input_types(MODELS[0].fields).items() if t == "double"]
        plain_s = plain_sum(raw, MODELS[0].key, numeric)
        text = [n for n, t in input_types(MODELS[0].fields).items() if t != "double"]
        global PLAIN_ALL_S
        PLAIN_ALL_S = plain_sum(raw, MODELS[0].key, numeric, text)
        say("[4/4] scoring every model every way")
        results = [
            score_model(raw, f, workdir, args.rows, plain_s, args.naive_timeout) for f in fits
        ]
        return results, plain_s
    finally:
        raw.close()


def summary(results: list[ModelResult], plain_s: float) -> list[str]:
    lines = [
        f"plain sum baseline (numeric inputs): {plain_s:.3f} s; plain sum of every input "
        f"(numbers + length of each text column): {PLAIN_ALL_S:.3f} s"
    ]
    for r in results:
        if r.model == "lead_logreg":
            lines.append(
                f"logistic regression: sql {r.sql_s:.3f} s = {r.ratio_sql_plain:.2f}x the plain "
                f"sum, {r.sql_s / PLAIN_ALL_S:.2f}x the plain sum of every input"
            )
    slow = [r.model for r in results if r.ratio_native_chosen < 1.0]
    lines.append(
        "chosen route at least as fast as native for every model"
        if not slow
        else f"chosen route slower than native for: {', '.join(slow)}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    global RUNS
    # LightGBM inside a Pipeline is fitted on the ColumnTransformer's unnamed array.
    warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
    args = parse_args(argv)
    RUNS = args.runs
    t0 = time.perf_counter()
    head = header(args.rows, args.train_rows)
    for line in head:
        say(line)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _shapes  # beside this script; imports bench/datasets.py

    shapes: dict[str, list] = {}
    results, plain_s = [], float("nan")
    with tempfile.TemporaryDirectory(prefix="mlsm_bench_") as tmp:
        if "demo" in args.data:
            results, plain_s = run(args, Path(tmp))
        for name in [d for d in args.data if d != "demo"]:
            say(f"[shapes] {name}")
            picked = [m for m in args.shape_models.split(",") if m] or None
            shapes[name] = _shapes.run_shapes(name, args.rows, RUNS, picked, Path(tmp), say)
    elapsed = time.perf_counter() - t0
    say("")
    for line in head:
        say(line)
    if results:
        for line in ["data: demo", *table(results), *summary(results, plain_s)]:
            say(line)
    for name, rs in shapes.items():
        say("")
        say(f"data: {name} (bench/datasets.py)")
        for line in _shapes.table(rs):
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
            "runs": RUNS,
            "plain_sum_s": plain_s,
            "plain_sum_all_inputs_s": PLAIN_ALL_S,
            "total_runtime_s": elapsed,
            "results": [r.to_dict() for r in results],
            "shapes": {
                n: [{**dataclasses.asdict(r), "wrong": r.wrong} for r in rs]
                for n, rs in shapes.items()
            },
        }
        out.write_text(json.dumps(doc, indent=2) + "\n")
        say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

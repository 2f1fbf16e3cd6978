"""The end-to-end thread as steps the CLI and the tests both call."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import ibis
import sqlglot
from sqlglot import exp

from mlsm_py.compile.assemblers import Assembled, assemble
from mlsm_py.compile.parity import ParityReport, check_parity, gate
from mlsm_py.compile.parity_python import check_parity_python
from mlsm_py.compile.path import choose_path
from mlsm_py.dbt import runner, writer
from mlsm_py.errors import SpecError, UnsupportedError
from mlsm_py.registry import artifacts, store
from mlsm_py.spec import Model, SummaryModel, check_project
from mlsm_py.train.trainer import Fit, train

DEFAULT_WAREHOUSE = Path("warehouse") / "mlsm.duckdb"


def warehouse_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("MLSM_WAREHOUSE") or DEFAULT_WAREHOUSE).resolve()


@dataclass
class Project:
    project_dir: Path
    warehouse: Path
    models: Sequence[Model]
    summaries: Sequence[SummaryModel]

    def __post_init__(self) -> None:
        check_project(self.models, self.summaries)
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)

    @property
    def artifacts_dir(self) -> Path:
        return self.warehouse.parent / "artifacts"

    @contextlib.contextmanager
    def connect(self) -> Iterator[ibis.BaseBackend]:
        # Short-lived: dbt cannot open the DuckDB file while another connection holds it.
        con = ibis.duckdb.connect(str(self.warehouse))
        try:
            yield con
        finally:
            con.disconnect()


@dataclass
class CompiledFit:
    fit: Fit
    compiled: writer.CompiledModel
    parity: ParityReport
    artifact: bytes
    artifact_sha256: str


def decide_path(m: Model, estimator: object) -> tuple[str, str, Assembled | None]:
    """(path, reason, assembled): SQL where it can express the fit and is expected to be at
    least as fast; the Python-model path otherwise, or where the definition says so."""
    try:
        assembled = assemble(estimator)
    except UnsupportedError as e:
        if m.scoring_path == "sql":
            raise
        return "python", f"SQL cannot express it: {e}", None
    if assembled.task == "multiclass":
        raise SpecError(
            f"model {m.name!r}: a lead score is one number per record; {type(estimator).__name__} "
            f"has {len(assembled.classes)} classes. Use mlsm_py.to_sql for multiclass models."
        )
    if m.scoring_path != "auto":
        return m.scoring_path, "declared in the model definition", assembled
    choice = choose_path(estimator, assembled)
    return choice.path, choice.reason, assembled


def build_features(p: Project) -> runner.BuildOutcome:
    """Staging, features and the input checks on them: training reads only checked data."""
    writer.write_feature_contracts(p.project_dir, p.models)
    relations = sorted({m.features for m in p.models})
    return runner.build(p.project_dir, p.warehouse, [f"+{r}" for r in relations])


def train_all(p: Project, say: Callable[[str], None] = print) -> list[Fit]:
    fits = []
    with p.connect() as con:
        for m in p.models:
            fit = train(con, m)
            say(
                f"  {m.name} v{m.version} ({m.status}): ROC AUC {fit.metrics['roc_auc']:.4f}, "
                f"top-10% capture {fit.metrics['top_decile_capture']:.1%} "
                f"({fit.train_rows:,} train / {len(fit.holdout):,} holdout rows)"
            )
            fits.append(fit)
    return fits


def compile_all(p: Project, fits: Sequence[Fit], say: Callable[[str], None] = print):
    """Compile every fit and pass it through the parity gate; any failure stops everything
    before a single file is written."""
    out = []
    with p.connect() as con:
        raw = con.con  # the DuckDB connection behind ibis: parity runs in the warehouse itself
        for fit in fits:
            m = fit.model
            path, reason, assembled = decide_path(m, fit.estimator)
            data, sha = artifacts.dumps(fit.estimator)
            if path == "sql":
                assert assembled is not None
                report = check_parity(fit.estimator, raw, fit.holdout)
            else:
                report = check_parity_python(fit.estimator, raw, fit.holdout)
            say(
                f"  {m.name}: {path} path ({reason}); parity over {report.rows_checked:,} rows "
                f"(holdout + adversarial), max |diff| {report.max_abs_diff:.2e}"
            )
            gate(m.name, m.version, report)
            if path == "sql":
                compiled = writer.compile_for_dbt(m, assembled, fit.estimator_name)
                compiled = dataclasses.replace(compiled, path_reason=reason)
            else:
                compiled = writer.compile_for_dbt_python(m, fit.estimator_name, sha, reason)
            out.append(CompiledFit(fit, compiled, report, data, sha))
    return out


def register(p: Project, compiled: Sequence[CompiledFit]) -> list[store.FitRecord]:
    import hashlib

    records = []
    for c in compiled:
        m = c.fit.model
        path = p.artifacts_dir / m.name / f"v{m.version}" / f"{c.compiled.fit_id}.skops"
        artifacts.write(c.artifact, path)
        sha = c.artifact_sha256
        records.append(
            store.FitRecord(
                model_name=m.name,
                model_version=m.version,
                fit_id=c.compiled.fit_id,
                status=m.status,
                estimator=c.fit.estimator_name,
                train_rows=c.fit.train_rows,
                holdout_rows=len(c.fit.holdout),
                data_hash=c.fit.data_hash,
                metrics=c.fit.metrics,
                parity=c.parity.to_dict(),
                artifact_path=str(path),
                artifact_sha256=sha,
                sql_sha256=hashlib.sha256(c.compiled.sql.encode()).hexdigest(),
                scoring_path=c.compiled.path,
            )
        )
    with p.connect() as con:
        store.record(con, records)
    return records


def write_models(p: Project, compiled: Sequence[CompiledFit]) -> list[Path]:
    writer.clean_generated(p.project_dir)
    paths = writer.write_feature_contracts(p.project_dir, p.models)
    paths += writer.write_scoring(p.project_dir, [c.compiled for c in compiled], p.summaries)
    return paths


def top_leads_sql(summary: str, key: str, n: int = 10) -> str:
    q = (
        exp.select(key, "winning_model", "winning_version", "score")
        .from_(exp.to_table("published.winners"))
        .where(exp.column("summary_model").eq(exp.Literal.string(summary)))
        .order_by(exp.column("score").desc(), exp.column(key))
        .limit(n)
    )
    return sqlglot.transpile(q.sql("duckdb"), read="duckdb", write="duckdb", pretty=True)[0]


def top_leads(p: Project, n: int = 10) -> tuple[str, list[dict]]:
    summary = p.summaries[0].name
    sql = top_leads_sql(summary, p.models[0].key, n)
    with p.connect() as con:
        rows = con.con.execute(sql).fetch_arrow_table().to_pylist()
    return sql, rows

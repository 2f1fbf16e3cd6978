"""The end-to-end thread as steps the CLI and the tests both call."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import ibis
import sqlglot
from sqlglot import exp

from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.parity import ParityReport, check_parity, gate
from mlsm_py.dbt import runner, writer
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
            assembled = assemble(fit.estimator)
            report = check_parity(fit.estimator, raw, fit.holdout)
            say(
                f"  {m.name}: parity over {report.rows_checked:,} rows "
                f"(holdout + adversarial), max |diff| {report.max_abs_diff:.2e}"
            )
            gate(m.name, m.version, report)
            compiled = writer.compile_for_dbt(m, assembled, fit.estimator_name)
            out.append(CompiledFit(fit, compiled, report))
    return out


def register(p: Project, compiled: Sequence[CompiledFit]) -> list[store.FitRecord]:
    import hashlib

    records = []
    for c in compiled:
        m = c.fit.model
        path = p.artifacts_dir / m.name / f"v{m.version}" / f"{c.compiled.fit_id}.skops"
        sha = artifacts.save(c.fit.estimator, path)
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

"""What every lifecycle step shares: the project, how to talk to the user, the registry
connection, and the generated dbt files rendered from the registry."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mlsm_py.dbt import writer
from mlsm_py.dbt.runner import DbtContext
from mlsm_py.errors import MlsmError
from mlsm_py.project import Project
from mlsm_py.registry import store
from mlsm_py.spec import Definitions


def default_actor() -> str:
    return os.environ.get("MLSM_ACTOR") or getpass.getuser() or "unknown"


@dataclass
class Session:
    project: Project
    say: Callable[[str], None] = print
    actor: str = field(default_factory=default_actor)
    verbose: bool = False

    @property
    def defs(self) -> Definitions:
        return self.project.definitions

    @property
    def dbt(self) -> DbtContext:
        p = self.project
        keys = tuple(sorted({(m.features, m.key) for m in self.defs.models}))
        t = p.target
        rows_from = None if t.kind == "duckdb" else t  # failing rows: the DuckDB file is read
        return DbtContext(
            p.dbt_dir, p.warehouse, p.dbt_target, p.logs_dir, self.verbose, keys, rows_from
        )

    def require_warehouse(self) -> None:
        """Commands that read what training left must not create an empty warehouse (a
        mistyped --warehouse would then report every check as passing on nothing)."""
        t = self.project.target
        if t.exists():
            return
        if t.kind == "duckdb":
            raise MlsmError(
                f"warehouse {t.state} does not exist; check --warehouse / $MLSM_WAREHOUSE, or "
                "run `mlsm train` first"
            )
        raise MlsmError(
            f"{t.describe()} has no mlsm registry yet; check --target and the MLSM_PG_* "
            "settings, or run `mlsm train` first"
        )

    @contextlib.contextmanager
    def registry(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # Short-lived: dbt opens the warehouse itself, and DuckDB admits one writer process.
        con = store.connect(self.project.target)
        try:
            yield con
        finally:
            con.close()


# (model, segment, alias) -> fit id, None: no such alias; segment None: the global fit
Overlay = Mapping[tuple[str, str | None, str], str | None]


def scored_fits(
    con: duckdb.DuckDBPyConnection, defs: Definitions, overlay: Overlay | None = None
) -> list[writer.Scored]:
    """The fits a build scores: every defined model's champion and challenger (of its global
    fit and of each segment), as registered (or as a running retrain would leave them:
    `overlay`). A role with segment fits but no global fit (a challenger in some segments
    only) scores those segments' records only."""
    current = store.aliases(con)
    out = []
    for m in defs.models:
        per_segment = store.segment_aliases(con, m.name) if m.segments else {}
        for key in overlay or {}:
            if key[0] == m.name and key[1] is not None and m.segments:
                per_segment.setdefault(key[1], {})
        for alias in (store.CHAMPION, store.CHALLENGER):
            fits = [(None, current.get(m.name, {}).get(alias))]
            fits += [(seg, al.get(alias)) for seg, al in sorted(per_segment.items())]
            for seg, fit_id in fits:
                if overlay is not None and (m.name, seg, alias) in overlay:
                    fit_id = overlay[(m.name, seg, alias)]
                if fit_id is None:
                    continue
                row = store.get_fit(con, fit_id)
                assert row is not None, f"alias {m.name}/{alias} points at unknown fit {fit_id}"
                out.append(
                    writer.Scored(
                        m,
                        alias,
                        row,
                        store.fit_metrics(con, fit_id),
                        tuple(store.input_reference(con, fit_id)) if seg is None else (),
                        seg,
                    )
                )
    return out


def ranked_fits(
    s: Session, con: duckdb.DuckDBPyConnection, overlay: Overlay | None = None
) -> list[writer.Scored]:
    """`scored_fits`, with a segmented model's global fit carrying the metrics of the model
    as the build routes it (see `evaluate.with_routed_metrics`): what best_member ranks."""
    from mlsm_py.flow.evaluate import with_routed_metrics

    return with_routed_metrics(s, con, scored_fits(con, s.defs, overlay))


def sync_files(
    s: Session, con: duckdb.DuckDBPyConnection, overlay: Overlay | None = None
) -> list[str]:
    """Render the generated dbt files from the registry, write what differs, and record each
    score model's checksum for the provenance test."""
    from mlsm_py.dbt import reasons_sql

    scored = ranked_fits(s, con, overlay)
    files = writer.render(s.defs, scored)
    changed = writer.write(s.project.dbt_dir, files)
    seed = reasons_sql.ensure_seed(s.project.dbt_dir, s.defs)
    if seed:
        changed.append(f"{seed} (reason texts: yours to edit)")
    store.record_generated(con, writer.score_files(files, scored))
    if overlay is None:  # a running retrain's overlay is not served before it publishes
        write_serving(s, con, scored)
    return changed


def write_serving(
    s: Session, con: duckdb.DuckDBPyConnection, scored: list[writer.Scored] | None = None
) -> Path:
    """The serving manifest `mlsm serve` watches, from the registry as it is now."""
    from mlsm_py.flow import serving

    scored = ranked_fits(s, con) if scored is None else scored
    return serving.write(s.project.state, serving.manifest(s.defs, con, scored))


def fit_row(c, actor: str, artifact_rel: str) -> dict:  # c: flow.compiled.Compiled
    from mlsm_py.flow.compiled import definition_hash

    f = c.fit
    b = f.holdout.bounds
    report = c.parity
    return {
        "fit_id": c.fit_id,
        "model_name": f.model.name,
        "model_version": f.model.version,
        "task": f.task,
        "outputs": json.dumps(c.outputs),
        "estimator": f.estimator_name,
        "route": c.route,
        "route_reason": c.route_reason,
        "route_timing": json.dumps(c.route_timing) if c.route_timing is not None else None,
        "trained_at": store.now(),
        "trained_by": actor,
        "train_rows": f.train_rows,
        "holdout_rows": len(f.holdout.X),
        "immature_rows": f.immature_rows,
        "data_hash": f.data_hash,
        "definition_hash": definition_hash(f.model),
        "as_of": b.as_of,
        "matured_until": b.matured_until,
        "holdout_from": b.holdout_from,
        "train_before": b.train_before,
        "validation_from": b.validation_from,
        "scoring_sql": c.scoring_sql,
        "dbt_sql": c.template,
        "dbt_sql_sha256": writer.sha256(c.template),
        "artifact_path": artifact_rel,
        "artifact_sha256": c.artifact_sha256,
        "parity_rows_checked": report.rows_checked,
        "parity_max_abs_diff": report.max_abs_diff,
        "parity_tolerance": report.tolerance,
        "parity_passed": report.passed,
        "parity": json.dumps(report.to_dict(), sort_keys=True, default=repr),
        "segment": f.segment,
        "reasons": json.dumps(c.reasons, sort_keys=True) if c.reasons else None,
        "dialect": c.dialect,
    }


def register(s: Session, con: duckdb.DuckDBPyConnection, c) -> bool:
    """Store the artifact and insert the fit row, unless the fit is registered already.
    Call inside a transaction. Returns whether a row was added."""
    from mlsm_py.registry import artifacts

    if store.get_fit(con, c.fit_id) is not None:
        return False
    rel = artifacts.store(c.artifact, c.artifact_sha256, s.project.state)
    store.insert_fit(con, fit_row(c, s.actor, rel), c.fit.metrics)
    store.insert_breakpoints(con, c.fit_id, c.fit.breakpoints)
    store.insert_bins(con, c.fit_id, c.fit.bins)
    store.insert_reference(con, c.fit_id, c.fit.reference)
    store.insert_samples(con, c.fit_id, c.fit.samples, c.fit.segment)
    return True

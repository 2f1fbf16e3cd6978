"""Reading and writing the registry (see `schema`). Every change of state goes through
`transaction`, so a killed process leaves the old rows or the new ones, never a mix."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from mlsm_py.errors import MlsmError
from mlsm_py.registry.schema import SCHEMA, TABLES, ddl, upgrades
from mlsm_py.warehouse.targets import Target


class WarehouseInUse(MlsmError):
    """Another process holds the DuckDB file."""


CHAMPION = "champion"
CHALLENGER = "challenger"


def connect(warehouse: Path | Target, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the registry tables present (created on first use). `warehouse`: a
    DuckDB file or a target (`warehouse.targets`)."""
    if isinstance(warehouse, Path):
        warehouse = Target("duckdb", {"type": "duckdb"}, warehouse)
    try:
        con = warehouse.connect(read_only=read_only)
    except duckdb.IOException as e:
        raise _in_use(warehouse.state, e) from None
    if read_only:
        return con
    with transaction(con):
        for stmt in ddl():
            con.execute(stmt)
        present: dict[str, set[str]] = {}
        q = "select table_name, column_name from information_schema.columns where table_schema = ?"
        for table, column in con.execute(q, [SCHEMA]).fetchall():
            if table in TABLES:
                present.setdefault(table, set()).add(column)
        for stmt in upgrades(present):
            con.execute(stmt)
    return con


def _in_use(warehouse: Path, err: Exception) -> Exception:
    text = str(err)
    if "lock" not in text.lower():
        return err
    pid = re.search(r"PID (\d+)", text)
    holder = f" by process {pid.group(1)}" if pid else ""
    return WarehouseInUse(
        f"the warehouse {warehouse} is open{holder} (a notebook, dashboard or another dbt run); "
        "DuckDB allows one writer, so nothing was run. Close it and run again"
    )


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    q = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    return bool(con.execute(q, [schema, name]).fetchone()[0])


def relation_columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    """(name, type) of a table's or view's columns, in order; `relation` is `name` (in the
    connection's current schema) or `schema.name`. Portable where DESCRIBE is not."""
    schema, _, name = relation.rpartition(".")
    q = (
        "select column_name, data_type from information_schema.columns "
        "where table_schema = coalesce(?, current_schema()) and table_name = ? "
        "order by ordinal_position"
    )
    return [(c, t) for c, t in con.execute(q, [schema or None, name]).fetchall()]


def has_registry(con: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(con, SCHEMA, "fits")


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("begin transaction")
    try:
        yield
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def _insert(con: duckdb.DuckDBPyConnection, table: str, row: Mapping[str, Any]) -> None:
    cols = list(row)
    unknown = [c for c in cols if c not in _columns(table)]
    assert not unknown, f"{table}: unknown columns {unknown}"
    marks = ", ".join("?" for _ in cols)
    con.execute(
        f"insert into {SCHEMA}.{table} ({', '.join(cols)}) values ({marks})", list(row.values())
    )


def _columns(table: str) -> list[str]:
    return [ln.split()[0] for ln in TABLES[table].strip().splitlines()]


def select_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# -- fits ---------------------------------------------------------------------------------------
def insert_fit(con: duckdb.DuckDBPyConnection, row: Mapping[str, Any], metrics: Mapping) -> None:
    _insert(con, "fits", row)
    for name, value in sorted(metrics.items()):
        _insert(con, "fit_metrics", {"fit_id": row["fit_id"], "metric": name, "value": value})


def insert_bins(con: duckdb.DuckDBPyConnection, fit_id: str, rows: Sequence[Mapping]) -> None:
    for r in rows:
        _insert(con, "fit_bins", {"fit_id": fit_id, **r})


def insert_reference(con: duckdb.DuckDBPyConnection, fit_id: str, rows: Sequence[Mapping]) -> None:
    for r in rows:
        _insert(con, "fit_input_reference", {"fit_id": fit_id, **r})


def input_reference(con: duckdb.DuckDBPyConnection, fit_id: str) -> list[dict]:
    q = f"select * from {SCHEMA}.fit_input_reference where fit_id = ? order by column_name, bin"
    return select_rows(con, q, [fit_id])


def insert_samples(
    con: duckdb.DuckDBPyConnection, fit_id: str, frame: Any, segment: str | None = None
) -> None:
    """The fit's sample marks, in one statement (a frame of record_key, sample, label)."""
    if frame is None or len(frame) == 0:
        return
    if hasattr(con, "copy_rows"):  # a server warehouse: COPY, not 100k parameter rows
        cols = ["fit_id", "segment", "record_key", "sample", "label"]
        rows = zip(
            [fit_id] * len(frame),
            [segment] * len(frame),
            frame["record_key"].astype(str),
            frame["sample"],
            frame["label"].astype(float),
            strict=True,
        )
        con.copy_rows(f"{SCHEMA}.fit_samples", cols, rows)
        return
    con.register("__mlsm_samples", frame)
    try:
        con.execute(
            f"insert into {SCHEMA}.fit_samples (fit_id, segment, record_key, sample, label) "
            "select ?, ?, record_key, sample, label from __mlsm_samples",
            [fit_id, segment],
        )
    finally:
        con.unregister("__mlsm_samples")


def insert_breakpoints(con: duckdb.DuckDBPyConnection, fit_id: str, points: Sequence) -> None:
    con.executemany(
        f"insert into {SCHEMA}.score_breakpoints (fit_id, percentile, score) values (?, ?, ?)",
        [[fit_id, i, float(v)] for i, v in enumerate(points)],
    )


def breakpoints(con: duckdb.DuckDBPyConnection, fit_id: str) -> list[float]:
    q = f"select score from {SCHEMA}.score_breakpoints where fit_id = ? order by percentile"
    return [r[0] for r in con.execute(q, [fit_id]).fetchall()]


def get_fit(con: duckdb.DuckDBPyConnection, fit_id: str) -> dict | None:
    rows = select_rows(con, f"select * from {SCHEMA}.fits where fit_id = ?", [fit_id])
    return rows[0] if rows else None


def fit_metrics(con: duckdb.DuckDBPyConnection, fit_id: str) -> dict[str, float]:
    q = f"select metric, value from {SCHEMA}.fit_metrics where fit_id = ? order by metric"
    return dict(con.execute(q, [fit_id]).fetchall())


# -- aliases ------------------------------------------------------------------------------------
def aliases(
    con: duckdb.DuckDBPyConnection, model_name: str | None = None, segment: str | None = None
) -> dict:
    """{model: {alias: fit_id}} of the global fits, or {alias: fit_id} of one model's fit
    for `segment` (None: its global fit)."""
    if model_name is not None:
        q = (
            f"select alias, fit_id from {SCHEMA}.aliases where model_name = ? "
            "and segment is not distinct from ? order by alias"
        )
        return dict(con.execute(q, [model_name, segment]).fetchall())
    rows = con.execute(
        f"select model_name, alias, fit_id from {SCHEMA}.aliases where segment is null "
        "order by model_name, alias"
    ).fetchall()
    out: dict[str, dict[str, str]] = {}
    for m, a, f in rows:
        out.setdefault(m, {})[a] = f
    return out


def segment_aliases(con: duckdb.DuckDBPyConnection, model_name: str) -> dict:
    """{segment: {alias: fit_id}} of a model's segment fits (the global fit left out)."""
    rows = con.execute(
        f"select segment, alias, fit_id from {SCHEMA}.aliases where model_name = ? "
        "and segment is not null order by segment, alias",
        [model_name],
    ).fetchall()
    out: dict[str, dict[str, str]] = {}
    for seg, a, f in rows:
        out.setdefault(seg, {})[a] = f
    return out


def set_alias(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    alias: str,
    fit_id: str | None,
    by: str,
    decision_id: str | None,
    segment: str | None = None,
) -> None:
    """Point `alias` of a model's fit for `segment` at a fit (None removes it). Call inside
    a transaction."""
    con.execute(
        f"delete from {SCHEMA}.aliases where model_name = ? and alias = ? "
        "and segment is not distinct from ?",
        [model_name, alias, segment],
    )
    if fit_id is not None:
        _insert(
            con,
            "aliases",
            {
                "model_name": model_name,
                "alias": alias,
                "fit_id": fit_id,
                "since": now(),
                "set_by": by,
                "decision_id": decision_id,
                "segment": segment,
            },
        )


# -- decisions ----------------------------------------------------------------------------------
@dataclass
class Decision:
    model_name: str
    action: str  # first_fit | retrain | promote | rollback
    actor: str
    outcome: str  # promoted | kept | refused | proposed | rolled_back | forced
    reason: str
    from_fit: str | None = None
    to_fit: str | None = None
    rule: str | None = None
    eval_rows: int | None = None
    eval_from: datetime | None = None
    eval_until: datetime | None = None
    run_id: str | None = None
    decision_id: str = ""
    segment: str | None = None  # the segment fit decided on; None: the global fit

    def row(self) -> dict:
        if not self.decision_id:
            self.decision_id = new_id()
        return {
            "decision_id": self.decision_id,
            "decided_at": now(),
            "model_name": self.model_name,
            "action": self.action,
            "actor": self.actor,
            "from_fit": self.from_fit,
            "to_fit": self.to_fit,
            "rule": self.rule,
            "outcome": self.outcome,
            "reason": self.reason,
            "eval_rows": self.eval_rows,
            "eval_from": self.eval_from,
            "eval_until": self.eval_until,
            "run_id": self.run_id,
            "segment": self.segment,
        }


def record_decision(
    con: duckdb.DuckDBPyConnection,
    d: Decision,
    compared: Mapping[str, Mapping[str, Any]] | None = None,
    pending: bool = False,
) -> str:
    """Write a decision and the metrics it compared ({role: {"fit_id":..., metric: value}}).
    `pending`: held back until the run publishes (see `apply_pending`)."""
    _insert(con, "pending_decisions" if pending else "decisions", d.row())
    for role, values in (compared or {}).items():
        for metric, value in sorted(values.items()):
            if metric == "fit_id":
                continue
            _insert(
                con,
                "decision_metrics",
                {
                    "decision_id": d.decision_id,
                    "fit_id": values["fit_id"],
                    "role": role,
                    "metric": metric,
                    "value": value,
                },
            )
    return d.decision_id


ANY = object()  # every segment's rows


def _decisions(
    con: duckdb.DuckDBPyConnection, model_name: str, segment: str | None | object, limit: str
) -> list[dict]:
    where, params = "", [model_name]
    if segment is not ANY:
        where, params = " and segment is not distinct from ?", [model_name, segment]
    return select_rows(
        con,
        f"select * from {SCHEMA}.decisions where model_name = ?{where} "
        f"order by decided_at desc, decision_id desc{limit}",
        params,
    )


def history(
    con: duckdb.DuckDBPyConnection, model_name: str, segment: str | None | object = ANY
) -> list[dict]:
    """A model's decisions, newest first: of every segment, or of one (None: the global)."""
    rows = _decisions(con, model_name, segment, "")
    for r in rows:
        r["compared"] = select_rows(
            con,
            f"select role, fit_id, metric, value from {SCHEMA}.decision_metrics "
            "where decision_id = ? order by role, metric",
            [r["decision_id"]],
        )
    return rows


def last_decision(
    con: duckdb.DuckDBPyConnection, model_name: str, segment: str | None | object = ANY
) -> dict | None:
    rows = _decisions(con, model_name, segment, " limit 1")
    return rows[0] if rows else None


def installing_decision(
    con: duckdb.DuckDBPyConnection, model_name: str, segment: str | None = None
) -> dict | None:
    """The decision that made the current champion (of `segment`) champion."""
    q = (
        f"select d.* from {SCHEMA}.aliases a join {SCHEMA}.decisions d "
        "on d.decision_id = a.decision_id where a.model_name = ? and a.alias = ? "
        "and a.segment is not distinct from ?"
    )
    rows = select_rows(con, q, [model_name, CHAMPION, segment])
    return rows[0] if rows else None


# -- a retrain's pending changes ----------------------------------------------------------------
def add_pending(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    model_name: str,
    alias: str,
    fit_id: str | None,
    decision_id: str | None,
    segment: str | None = None,
) -> None:
    _insert(
        con,
        "pending",
        {
            "run_id": run_id,
            "model_name": model_name,
            "alias": alias,
            "fit_id": fit_id,
            "decision_id": decision_id,
            "segment": segment,
        },
    )


def pending(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    return select_rows(
        con,
        f"select * from {SCHEMA}.pending where run_id = ? order by model_name, alias",
        [run_id],
    )


def apply_pending(con: duckdb.DuckDBPyConnection, run_id: str, by: str) -> int:
    """Move a run's pending aliases and decisions into place. Call inside the publication
    transaction: they take effect together with the published tables."""
    rows = pending(con, run_id)
    for r in rows:
        set_alias(con, r["model_name"], r["alias"], r["fit_id"], by, r["decision_id"], r["segment"])
    # Named columns: an upgraded registry may hold them in another order than a new one.
    cols = ", ".join(_columns("decisions"))
    con.execute(
        f"insert into {SCHEMA}.decisions ({cols}) select {cols} from {SCHEMA}.pending_decisions "
        "where run_id = ?",
        [run_id],
    )
    _clear_pending(con, run_id)
    return len(rows)


def discard_pending(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> None:
    """Forget a run's pending changes (None: every run's, e.g. of a run that was killed)."""
    where, params = ("where run_id = ?", [run_id]) if run_id else ("", [])
    # The metrics of decisions that never took effect go with them.
    con.execute(
        f"delete from {SCHEMA}.decision_metrics where decision_id in "
        f"(select decision_id from {SCHEMA}.pending_decisions {where})",
        params,
    )
    _clear_pending(con, run_id)


def _clear_pending(con: duckdb.DuckDBPyConnection, run_id: str | None) -> None:
    where, params = ("where run_id = ?", [run_id]) if run_id else ("", [])
    for table in ("pending", "pending_decisions"):
        con.execute(f"delete from {SCHEMA}.{table} {where}", params)


# -- generated files ----------------------------------------------------------------------------
def record_generated(con: duckdb.DuckDBPyConnection, files: Mapping[str, tuple[str, str]]) -> None:
    """{path: (sha256, fit id)} of every generated score model, replacing what was there."""
    with transaction(con):
        con.execute(f"delete from {SCHEMA}.generated_files")
        for path, (sha, fit_id) in sorted(files.items()):
            _insert(
                con,
                "generated_files",
                {"path": path, "sha256": sha, "fit_id": fit_id, "written_at": now()},
            )


# -- the publication log ------------------------------------------------------------------------
def record_build(con: duckdb.DuckDBPyConnection, row: Mapping[str, Any]) -> None:
    _insert(con, "builds", row)


def record_volume(con: duckdb.DuckDBPyConnection, run_id: str, relation: str, rows: int) -> None:
    _insert(con, "build_volumes", {"run_id": run_id, "relation": relation, "rows": rows})


def builds(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[dict]:
    return select_rows(
        con, f"select * from {SCHEMA}.builds order by started_at desc limit ?", [limit]
    )

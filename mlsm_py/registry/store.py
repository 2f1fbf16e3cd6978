"""The fit registry: one row per fit in the warehouse table mlsm_registry.fits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

DATABASE = "mlsm_registry"
TABLE = "fits"

SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("fit_id", pa.string()),
        ("status", pa.string()),
        ("trained_at", pa.timestamp("us", tz="UTC")),
        ("estimator", pa.string()),
        ("scoring_path", pa.string()),
        ("train_rows", pa.int64()),
        ("holdout_rows", pa.int64()),
        ("data_hash", pa.string()),
        ("metrics", pa.string()),
        ("parity", pa.string()),
        ("artifact_path", pa.string()),
        ("artifact_sha256", pa.string()),
        ("sql_sha256", pa.string()),
    ]
)


@dataclass(frozen=True)
class FitRecord:
    model_name: str
    model_version: int
    fit_id: str
    status: str
    estimator: str
    train_rows: int
    holdout_rows: int
    data_hash: str
    metrics: dict
    parity: dict
    artifact_path: str
    artifact_sha256: str
    sql_sha256: str
    scoring_path: str = "sql"

    def row(self, trained_at: datetime) -> dict:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "fit_id": self.fit_id,
            "status": self.status,
            "trained_at": trained_at,
            "estimator": self.estimator,
            "scoring_path": self.scoring_path,
            "train_rows": self.train_rows,
            "holdout_rows": self.holdout_rows,
            "data_hash": self.data_hash,
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "parity": json.dumps(self.parity, sort_keys=True),
            "artifact_path": self.artifact_path,
            "artifact_sha256": self.artifact_sha256,
            "sql_sha256": self.sql_sha256,
        }


def record(con, fits: list[FitRecord]) -> None:
    """Append fits to the registry (an ibis connection), creating the table on first use."""
    if DATABASE not in con.list_databases():
        con.create_database(DATABASE)
    if TABLE not in con.list_tables(database=DATABASE):
        con.create_table(TABLE, schema=SCHEMA, database=DATABASE)
    now = datetime.now(UTC)
    con.insert(TABLE, pa.Table.from_pylist([f.row(now) for f in fits], schema=SCHEMA),
               database=DATABASE)


def latest(con, model_name: str) -> dict | None:
    if DATABASE not in con.list_databases() or TABLE not in con.list_tables(database=DATABASE):
        return None
    t = con.table(TABLE, database=DATABASE)
    rows = (
        t.filter(t.model_name == model_name)
        .order_by(t.trained_at.desc())
        .limit(1)
        .to_pyarrow()
        .to_pylist()
    )
    return rows[0] if rows else None

"""What a generated dbt Python model calls (dbt-duckdb runs it in-process, inside `dbt build`).

The generated file holds only the fit id and the artifact's sha256; the artifact's location comes
from the registry table in the same warehouse, and the bytes are hashed again before loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlglot import exp

from mlsm_py.errors import ArtifactError
from mlsm_py.pyscore import BATCH_ROWS, score_relation
from mlsm_py.registry import artifacts, store


def artifact_of(session: Any, fit_id: str, sha256: str) -> Path:
    query = (
        exp.select("artifact_path", "artifact_sha256")
        .from_(exp.table_(store.TABLE, db=store.DATABASE))
        .where(exp.column("fit_id").eq(exp.Placeholder()))
        .order_by(exp.column("trained_at").desc())
        .limit(1)
    )
    row = session.execute(query.sql("duckdb"), [fit_id]).fetchone()
    if row is None:
        raise ArtifactError(f"fit {fit_id} is not in the registry {store.DATABASE}.{store.TABLE}")
    path, registered = row
    if registered != sha256:
        raise ArtifactError(
            f"fit {fit_id}: the registry records artifact sha256 {registered}, the generated "
            f"model expects {sha256}; regenerate the dbt models"
        )
    return Path(path)


def score_model(
    session: Any,
    relation: Any,
    *,
    fit_id: str,
    artifact_sha256: str,
    key: str,
    constants: dict[str, str | int],
    batch_rows: int = BATCH_ROWS,
) -> pa.Table:
    estimator = artifacts.load(artifact_of(session, fit_id, artifact_sha256), artifact_sha256)
    return score_relation(estimator, relation, key, batch_rows, constants)

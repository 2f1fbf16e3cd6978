"""What a generated dbt Python model calls (dbt-duckdb runs it in-process, inside `dbt build`).

The generated file holds only the fit id. The artifact's location and sha256 come from the
registry in the same warehouse, and the bytes are hashed again before loading: a fit that is
not registered in this warehouse cannot be scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from mlsm_py.errors import ArtifactError
from mlsm_py.pyscore import BATCH_ROWS, score_relation
from mlsm_py.registry import artifacts
from mlsm_py.registry.schema import SCHEMA


def warehouse_file(session: Any) -> Path:
    row = session.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    if row is None or not row[0]:
        raise ArtifactError("the Python-model path needs a DuckDB warehouse file")
    return Path(row[0]).resolve()


def artifact_of(session: Any, fit_id: str) -> tuple[Path, str]:
    row = session.execute(
        f"select artifact_path, artifact_sha256 from {SCHEMA}.fits where fit_id = ?", [fit_id]
    ).fetchone()
    if row is None:
        raise ArtifactError(
            f"fit {fit_id} is not registered in this warehouse ({SCHEMA}.fits); "
            "`mlsm build` rewrites the generated models from this warehouse's registry"
        )
    path, sha = row
    return artifacts.resolve(warehouse_file(session), path), sha


def score_model(
    session: Any,
    relation: Any,
    *,
    fit_id: str,
    key: str,
    constants: dict[str, str | int],
    batch_rows: int = BATCH_ROWS,
) -> pa.Table:
    path, sha = artifact_of(session, fit_id)
    estimator = artifacts.load(path, sha)
    return score_relation(estimator, relation, key, batch_rows, constants)

"""The serving manifest: what `mlsm serve` scores with, written from the registry whenever the
champions may have moved (a publication, a promotion, a rollback, a train).

The API must never hold the warehouse open (DuckDB admits one writer or many readers, and an
open reader makes the next `dbt build` fail), so it reads this small JSON file instead of the
registry: every live model's champion and challenger per segment, with the artifact to load
(content-addressed, sha256-checked), the fit's percentile breakpoints and each summary model's
candidates in the order the winners model ranks them. It is written under a temporary name
and renamed over the old one, so a reader sees the old manifest or the new one, never half of
one; the server watches it and swaps its state between requests. The file is derived and
deterministic (same registry, same bytes): a kill before the rename leaves the previous one,
and the next mlsm command writes it again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb

from mlsm_py import __version__
from mlsm_py.dbt import writer
from mlsm_py.dbt.summaries_sql import candidates
from mlsm_py.registry import store

FORMAT = 1


def manifest_file(warehouse: Path) -> Path:
    return warehouse.with_name(f"{warehouse.stem}.serving.json")


def manifest(defs, con: duckdb.DuckDBPyConnection, scored: list[writer.Scored]) -> dict:
    """The manifest's content for the fits a build scores (`session.ranked_fits`)."""
    models: dict[str, dict[str, Any]] = {}
    for m in defs.models:
        models[m.name] = {
            "model": m.name,
            "version": m.version,
            "status": m.status,
            "key": m.key,
            "segment_by": list(m.segments),
            "fits": [],
        }
    for sc in scored:
        row = sc.fit
        models[sc.model.name]["fits"].append(
            {
                "segment": sc.segment,
                "role": sc.alias,
                "fit_id": row["fit_id"],
                "task": row["task"],
                "trained_at": str(row["trained_at"]),
                "artifact": row["artifact_path"],
                "artifact_sha256": row["artifact_sha256"],
                "breakpoints": store.breakpoints(con, row["fit_id"]),
                "metrics": {k: v for k, v in sorted(sc.metrics.items()) if v == v},
                # {"k", "method", "means"}: the API rebuilds the same reason expressions.
                "reasons": _reasons(row.get("reasons")),
            }
        )
    for entry in models.values():
        entry["fits"].sort(key=lambda f: (f["role"], f["segment"] is not None, f["segment"] or ""))
    summaries = [
        {
            "summary": summary.name,
            "rule": summary.rule,
            "candidates": [name for name, _ in order],
            "arms": [list(a) for a in summary.split.arms] if summary.split else [],
        }
        for summary, order in candidates(defs, scored)
    ]
    return {
        "generated_by": f"mlsm {__version__} from the registry; rewritten by every mlsm command "
        "that moves a champion. Do not edit.",
        "format": FORMAT,
        "models": [models[m.name] for m in defs.models if models[m.name]["fits"]],
        "summaries": summaries,
    }


def _reasons(doc: str | None) -> dict | None:
    if not doc:
        return None
    d = json.loads(doc)
    return {"k": d["k"], "method": d["method"], "means": d["means"]}


def write(warehouse: Path, content: dict) -> Path:
    """Atomically replace the manifest (temp file + rename), only when its bytes change."""
    target = manifest_file(warehouse)
    data = (json.dumps(content, indent=1, sort_keys=True) + "\n").encode()
    if target.is_file() and target.read_bytes() == data:
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def read(warehouse: Path) -> dict:
    return json.loads(manifest_file(warehouse).read_text())

"""Runs dbt in-process (dbtRunner) against the project and reports failing checks by name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mlsm_py.errors import BuildError


@dataclass
class BuildOutcome:
    success: bool
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _describe(result) -> str:
    node = result.node
    meta = getattr(node, "test_metadata", None)
    column = getattr(node, "column_name", None)
    attached = getattr(node, "attached_node", None) or ""
    model = attached.rsplit(".", 1)[-1] if attached else ""
    if meta is not None:
        kwargs = {k: v for k, v in (meta.kwargs or {}).items() if k not in ("model", "column_name")}
        rule = meta.name + (f" {kwargs}" if kwargs else "")
        where = f"{model}.{column}" if column else model
        return (
            f"check {node.name} failed on {where}: {result.failures or 0} rows break the rule "
            f"{rule}"
        )
    return f"{node.resource_type} {node.name}: {result.status}: {result.message}"


def run(project_dir: Path, warehouse: Path, args: list[str]) -> BuildOutcome:
    from dbt.cli.main import dbtRunner

    os.environ["MLSM_WAREHOUSE"] = str(Path(warehouse).resolve())
    os.environ.setdefault("DO_NOT_TRACK", "1")
    common = ["--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
    runner = dbtRunner()
    if not (project_dir / "dbt_packages" / "mlsm").exists():
        deps = runner.invoke(["deps", *common])
        if not deps.success:
            raise BuildError(f"dbt deps failed: {deps.exception}")
    res = runner.invoke([*args, *common])
    if res.exception is not None:
        raise BuildError(f"dbt {args[0]} could not run: {res.exception}")
    outcome = BuildOutcome(success=bool(res.success))
    for r in getattr(res.result, "results", []) or []:
        status = str(r.status)
        outcome.counts[status] = outcome.counts.get(status, 0) + 1
        if status in ("fail", "error"):
            outcome.failures.append(_describe(r))
    return outcome


def build(project_dir: Path, warehouse: Path, select: list[str] | None = None) -> BuildOutcome:
    """`dbt build`; raises BuildError naming each failing check. A failing check skips every
    table downstream of it, so the published tables keep their previous contents."""
    args = ["build"] + (["--select", *select] if select else [])
    outcome = run(project_dir, warehouse, args)
    if not outcome.success:
        listed = "\n  - ".join(outcome.failures) or "(see the dbt log above)"
        raise BuildError(
            f"dbt build failed; nothing new was published.\n  - {listed}"
        )
    return outcome

"""Runs dbt in-process (dbtRunner) against the project and reports failing checks by name.

dbt's own output goes to the project's log file unless `verbose`; the caller prints a summary."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsm_py.dbt import failures
from mlsm_py.dbt.common import FULL_REFRESH_ENV, RUN_ID_ENV
from mlsm_py.errors import BuildError


@dataclass
class BuildOutcome:
    success: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        order = ("success", "pass", "fail", "error", "skipped", "warn")
        parts = [f"{self.counts[k]} {k}" for k in order if self.counts.get(k)]
        return ", ".join(parts) or "nothing to run"


@dataclass(frozen=True)
class DbtContext:
    dbt_dir: Path
    warehouse: Path
    target: str | None = None
    log_dir: Path | None = None
    verbose: bool = False
    keys: tuple[tuple[str, str], ...] = ()  # (relation, its key column): failures name keys
    # Where failing rows are sampled from: a `warehouse.targets.Target` (None: the DuckDB file)
    connection: Any = None


def macro_package() -> Path:
    """The `mlsm` dbt macro package: `macros/` of the repository, linked into the package as
    `mlsm_py/dbt/macros` so that the wheel carries it."""
    return (Path(__file__).parent / "macros").resolve()


def run(
    ctx: DbtContext,
    args: list[str],
    variables: dict | None = None,
    run_id: str | None = None,
    full_refresh: bool = False,
) -> BuildOutcome:
    env = {
        "MLSM_WAREHOUSE": str(Path(ctx.warehouse).resolve()),
        "MLSM_DBT_PACKAGE": str(macro_package()),
        "DO_NOT_TRACK": os.environ.get("DO_NOT_TRACK", "1"),
        # Read by mlsm.run_id() when a node runs; empty: dbt's own invocation id.
        RUN_ID_ENV: run_id or "",
        # Read by mlsm.full_refresh() when a node runs (a var would cost two re-parses).
        FULL_REFRESH_ENV: "1" if full_refresh else "",
    }
    with environment(env):
        return _invoke(ctx, args, variables)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """dbt reads the profile's env_var()s from the process environment; set them for this
    invocation only, so one project's warehouse never leaks into the next command."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _invoke(ctx: DbtContext, args: list[str], variables: dict | None) -> BuildOutcome:
    import time

    from dbt.cli.main import dbtRunner

    common = ["--project-dir", str(ctx.dbt_dir)]
    if (ctx.dbt_dir / "profiles.yml").is_file():
        common += ["--profiles-dir", str(ctx.dbt_dir)]
    flags = []
    if ctx.log_dir is not None:
        flags += ["--log-path", str(ctx.log_dir)]
    if not ctx.verbose:
        flags += ["--log-level", "none", "--log-level-file", "info"]
    if ctx.target:
        common += ["--target", ctx.target]
    runner = dbtRunner()
    t0 = time.perf_counter()
    if not (ctx.dbt_dir / "dbt_packages" / "mlsm").exists():
        deps = runner.invoke([*flags, "deps", "--project-dir", str(ctx.dbt_dir)])
        if not deps.success:
            raise BuildError(f"dbt deps failed: {deps.exception}")
    extra = ["--vars", json.dumps(variables)] if variables else []
    res = runner.invoke([*flags, *args, *common, *extra])
    if res.exception is not None:
        raise BuildError(f"dbt {args[0]} could not run: {res.exception}")
    outcome = BuildOutcome(success=bool(res.success), seconds=time.perf_counter() - t0)
    rows_from = ctx.connection or ctx.warehouse
    for r in getattr(res.result, "results", []) or []:
        status = str(r.status)
        outcome.counts[status] = outcome.counts.get(status, 0) + 1
        if status in ("fail", "error"):
            outcome.failures.append(failures.describe(r, rows_from, dict(ctx.keys)))
        elif status == "warn":
            outcome.warnings.append(failures.describe(r, rows_from, dict(ctx.keys)))
    return outcome


def build(
    ctx: DbtContext,
    select: list[str] | None = None,
    variables: dict | None = None,
    run_id: str | None = None,
    unit_tests: bool = True,
    full_refresh: bool = False,
) -> BuildOutcome:
    """`dbt build`; raises BuildError naming each failing check. A failing check skips every
    model downstream of it. `unit_tests` False leaves dbt's unit tests out."""
    # A partial build runs only the checks whose inputs it all builds (dbt's default "eager"
    # would also run checks that read a model outside the selection, not built yet).
    args = ["build"] + (["--select", *select, "--indirect-selection", "cautious"] if select else [])
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    outcome = run(ctx, args, variables, run_id, full_refresh)
    if not outcome.success:
        listed = "\n  - ".join(outcome.failures) or "(see the dbt log)"
        err = BuildError(f"dbt build failed; nothing new was published.\n  - {listed}")
        err.failures = outcome.failures
        raise err
    return outcome

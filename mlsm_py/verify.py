"""`mlsm verify`: the parity gate again for a registered fit, on its holdout, its adversarial
rows, and optionally N fuzzed rows, on the path the fit is scored by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import ibis

from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.fuzz import FuzzReport, fuzz_parity, fuzz_table
from mlsm_py.compile.parity import ParityReport, check_parity, input_types
from mlsm_py.compile.parity_python import check_parity_python
from mlsm_py.errors import MlsmError
from mlsm_py.frames import model_frame
from mlsm_py.pipeline import warehouse_path
from mlsm_py.registry import artifacts, store
from mlsm_py.spec import Model
from mlsm_py.train.trainer import input_types as field_types

__all__ = ["VerifyResult", "verify", "warehouse_path"]


@dataclass(frozen=True)
class VerifyResult:
    path: str
    gate: ParityReport
    fuzz: FuzzReport | None

    @property
    def passed(self) -> bool:
        return self.gate.passed and (self.fuzz is None or self.fuzz.parity.passed)


def _registered(warehouse: Path, model: Model) -> dict:
    if not warehouse.is_file():
        raise MlsmError(f"warehouse {warehouse} does not exist; run `mlsm demo` first")
    con = ibis.duckdb.connect(str(warehouse))
    try:
        record = store.latest(con, model.name)
    finally:
        con.disconnect()
    if record is None:
        raise MlsmError(f"model {model.name!r} has no registered fit in {warehouse}")
    return record


def verify(
    model: Model,
    warehouse: Path,
    fuzz_rows: int = 0,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> VerifyResult:
    record = _registered(warehouse, model)
    estimator = artifacts.load(Path(record["artifact_path"]), record["artifact_sha256"])
    path = record["scoring_path"] or "sql"
    say(
        f"{model.name} v{record['model_version']} fit {record['fit_id']} "
        f"({record['estimator']}, {path} path); artifact sha256 verified"
    )
    con = duckdb.connect(str(warehouse))
    try:
        holdout = _holdout(con, model, record)
        assembled = assemble(estimator) if path == "sql" else None
        if path == "sql":
            gate = check_parity(estimator, con, holdout)
        else:
            gate = check_parity_python(estimator, con, holdout)
        say(_line("holdout + adversarial", gate.rows_checked, gate.max_abs_diff, gate.passed))
        fuzz = None
        if fuzz_rows:
            types = input_types(assembled) if assembled else field_types(model)
            table = fuzz_table(types, holdout, fuzz_rows, seed, assembled)
            fuzz = fuzz_parity(estimator, con, table, types, assembled=assembled, path=path)
            say(
                _line(
                    "fuzzed", fuzz.parity.rows_checked, fuzz.parity.max_abs_diff, fuzz.parity.passed
                )
                + f"; {fuzz.rows_above_tolerance:,} rows above tolerance "
                f"{fuzz.parity.tolerance:g}; {fuzz.parity.rows_refused_by_estimator:,} rows "
                "refused by the library (not scored by it)"
            )
    finally:
        con.close()
    result = VerifyResult(path, gate, fuzz)
    for name, report in (("gate", gate), ("fuzz", fuzz.parity if fuzz else None)):
        if report is not None and not report.passed:
            say(f"  {name} worst row: {report.worst_row}")
    say("parity holds" if result.passed else "PARITY FAILED")
    return result


def _line(what: str, rows: int, diff: float, passed: bool) -> str:
    return f"  {what}: {rows:,} rows checked, max |SQL - Python| {diff:.2e} " + (
        "(ok)" if passed else "(ABOVE TOLERANCE)"
    )


def _holdout(con: duckdb.DuckDBPyConnection, model: Model, record: dict):
    import json

    from sqlglot import exp

    since = json.loads(record["metrics"]).get("holdout_from")
    query = exp.select(*[exp.column(f, quoted=True) for f in model.field_names]).from_(
        exp.to_table(model.features)
    )
    if since:
        query = query.where(
            exp.column(model.split.column, quoted=True)
            >= exp.cast(exp.Literal.string(since), "timestamp")
        )
    df = con.execute(query.order_by(exp.column(model.key, quoted=True)).sql("duckdb")).df()
    return model_frame(df, field_types(model))

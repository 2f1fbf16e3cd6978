"""`mlsm verify`: the parity gate again for a registered fit, on its holdout, its adversarial
rows, and optionally N fuzzed rows, on the path the fit is scored by."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from mlsm_py import segments
from mlsm_py.errors import MlsmError
from mlsm_py.estimator import input_types as field_types
from mlsm_py.flow.compiled import assemble_for
from mlsm_py.flow.session import Session
from mlsm_py.frames import model_frame
from mlsm_py.parity.fuzz import FuzzReport, fuzz_parity, fuzz_table
from mlsm_py.parity.gate import ParityReport, check_parity, input_types
from mlsm_py.parity.python_route import check_parity_python
from mlsm_py.registry import artifacts, store
from mlsm_py.spec import Model
from mlsm_py.train.trainer import read_window

__all__ = ["VerifyResult", "verify"]


@dataclass(frozen=True)
class VerifyResult:
    path: str
    gate: ParityReport
    fuzz: FuzzReport | None

    @property
    def passed(self) -> bool:
        return self.gate.passed and (self.fuzz is None or self.fuzz.parity.passed)


def verify(
    s: Session,
    model_name: str,
    fuzz_rows: int = 0,
    seed: int = 0,
    segment: str | None = None,
) -> VerifyResult:
    """The gate again on the champion fit (of one segment, with `segment`; artifact sha256
    verified first)."""
    model = s.defs.model(model_name)
    say = s.say
    target = s.project.target
    warehouse = target.describe()
    s.require_warehouse()
    con = target.connect()
    engine = target.engine(con)  # the gate runs in the warehouse the fit scores in
    try:
        champion = (
            store.aliases(con, model.name, segment).get(store.CHAMPION)
            if store.has_registry(con)
            else None
        )
        record = store.get_fit(con, champion) if champion else None
        if record is None:
            where = f" for segment {segment!r}" if segment is not None else ""
            raise MlsmError(f"model {model.name!r} has no champion fit{where} in {warehouse}")
        estimator = artifacts.load(
            artifacts.resolve(s.project.state, record["artifact_path"]), record["artifact_sha256"]
        )
        path = record["route"]
        say(
            f"{model.name} v{record['model_version']} fit {record['fit_id']} "
            f"({record['estimator']}, {path} route); artifact sha256 verified"
        )
        holdout = _holdout(con, model, record)
        assembled = assemble_for(model, estimator) if path == "sql" else None
        if path == "sql":
            gate = check_parity(estimator, engine, holdout, assembled=assembled)
        else:
            gate = check_parity_python(estimator, con, holdout)
        say(_line("holdout + adversarial", gate.rows_checked, gate.max_abs_diff, gate.sql_passed))
        if gate.evaluator_max_abs_diff is not None:
            say(
                f"  serving evaluator (the API's): same {gate.rows_checked:,} rows, max |API - "
                f"Python| {gate.evaluator_max_abs_diff:.2e} "
                + ("(ok)" if gate.evaluator_passed else "(ABOVE TOLERANCE)")
            )
        else:
            say("  serving evaluator: none (only the library can score this fit; not served)")
        fuzz = None
        if fuzz_rows:
            types = input_types(assembled) if assembled else field_types(model.fields)
            table = fuzz_table(types, holdout, fuzz_rows, seed, assembled)
            on = engine if path == "sql" else con
            fuzz = fuzz_parity(estimator, on, table, types, assembled=assembled, path=path)
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


def _holdout(con: duckdb.DuckDBPyConnection, model: Model, record: dict) -> pd.DataFrame:
    """The fit's own holdout rows, from the bounds the registry recorded."""
    df = read_window(con, model, record["holdout_from"], record["matured_until"], True)
    if record.get("segment") is not None:  # a segment fit's holdout: its level's rows
        df = df[(segments.labels(df, model) == record["segment"]).to_numpy()]
    return model_frame(df, field_types(model.fields))

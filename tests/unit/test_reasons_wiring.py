"""Reason codes in the lifecycle, without a warehouse: the spec's rules, the generated union
(NULL columns for fits without reasons), the call list's texts, and the starter seed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mlsm_py.dbt import reasons_sql, writer
from mlsm_py.errors import SpecError
from mlsm_py.spec_summary import CallList
from tests.lifecycle_defs import make
from tests.unit.test_writer import _fit


def _with_reasons(fit: dict, k: int) -> dict:
    return {**fit, "reasons": json.dumps({"k": k, "method": "linear", "means": [0.0]})}


def test_spec_bounds_reasons_and_keeps_them_off_the_python_route():
    m = make("weak").models[0]
    assert dataclasses.replace(m, reasons=4).reasons == 4
    with pytest.raises(SpecError, match="between 0 and the number of fields"):
        dataclasses.replace(m, reasons=len(m.fields) + 1)
    with pytest.raises(SpecError, match="reasons must be an integer"):
        dataclasses.replace(m, reasons=True)
    with pytest.raises(SpecError, match="computed in SQL"):
        dataclasses.replace(m, reasons=2, scoring_path="python")


def test_union_gives_fits_without_reasons_null_columns_and_the_call_list_texts():
    defs = make("weak")
    a, d = defs.models
    summary = dataclasses.replace(
        defs.summaries[0], call_list=CallList("lead_calls", columns=("country",))
    )
    defs = dataclasses.replace(
        defs, models=[dataclasses.replace(a, reasons=2), d], summaries=[summary]
    )
    a = defs.models[0]
    scored = [
        writer.Scored(a, "champion", _with_reasons(_fit("f1"), 2)),
        writer.Scored(d, "champion", _fit("f3")),  # a fit from before reasons: NULLs
    ]
    files = writer.render(defs, scored)
    union = files[Path("models/scores/scores.sql")]
    lines = {ln.split(" from ")[-1]: ln for ln in union.splitlines() if " from score__" in ln}
    assert "reason_2, reason_2_contribution" in lines["score__lead_a"]
    assert "cast(null as varchar) as reason_1" in lines["score__lead_d"]
    calls = files[Path("models/scores/lead_calls.sql")]
    assert "ref('reason_texts')" in calls and "reason_2_text" in calls
    assert "reasons.fit_id = winners.winning_fit_id" in calls


def test_starter_seed_is_written_once_and_never_rewritten(tmp_path):
    defs = make("weak")
    assert reasons_sql.ensure_seed(tmp_path, defs) is None  # no model declares reasons
    a, d = defs.models
    defs = dataclasses.replace(defs, models=[dataclasses.replace(a, reasons=2), d])
    path = Path(reasons_sql.ensure_seed(tmp_path, defs))
    rows = path.read_text().splitlines()
    assert rows[0] == "input_column,direction,text"
    assert f"{a.fields[0].name},up,{a.fields[0].name} raised the score" in rows
    path.write_text("input_column,direction,text\nvisits,up,Visits often\n")  # the team's text
    assert reasons_sql.ensure_seed(tmp_path, defs) is None
    assert "Visits often" in path.read_text()

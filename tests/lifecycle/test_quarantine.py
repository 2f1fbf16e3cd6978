"""Quarantine, declared per field: rows breaking a quarantine rule are kept out of scoring and
listed with the rule and the value, and the build publishes while the share stays within the
limit; above it nothing is published. Unknown levels may pass (scored by an encoder that
ignores them) or be quarantined."""

from __future__ import annotations

import dataclasses

import duckdb
import pytest

from mlsm_py.contracts import quarantined
from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import BuildError
from mlsm_py.flow.build import run_build
from mlsm_py.spec import Definitions, Field
from models_py.leads import CHANNELS, COUNTRIES
from tests.helpers import build_project, query, run_counts, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
LIMIT = 0.05


def _defs() -> Definitions:
    base = make("better")
    fields = (
        Field("country", "category", levels=COUNTRIES, unknown_levels="pass"),
        Field(
            "source_channel",
            "category",
            levels=CHANNELS,
            unknown_levels="quarantine",
            quarantine_limit=LIMIT,
        ),
        Field(
            "visits",
            "integer",
            nullable=False,
            min=0,
            severity="quarantine",
            quarantine_limit=LIMIT,
        ),
        Field("pages_viewed", "integer", nullable=False, min=0),
        Field("quotes_requested", "integer", nullable=False, min=0),
        Field("session_minutes", "double", min=0),
    )
    models = [dataclasses.replace(m, fields=fields) for m in base.models]
    return Definitions(models, base.summaries)


def _corrupt(wh, sql: str) -> None:
    con = duckdb.connect(str(wh))
    con.execute(sql)
    con.close()


def test_quarantine_under_and_over_its_limit(tmp_path):
    s = session(tmp_path, _defs())
    build_project(s, generate_leads(4000, seed=29))
    wh = s.project.warehouse
    open_ids = [r[0] for r in query(wh, "select lead_id from published.winners order by 1")]
    assert len(open_ids) > 50
    few = open_ids[:40]  # 1% of the 4,000 rows of lead_features: within the limit
    listed = ", ".join(map(str, few))
    _corrupt(wh, f"update raw.leads set visits = -3 where lead_id in ({listed})")
    odd_country, odd_channel = open_ids[-1], open_ids[-2]
    _corrupt(wh, f"update raw.leads set country = 'zz' where lead_id = {odd_country}")
    _corrupt(wh, f"update raw.leads set source_channel = 'fax' where lead_id = {odd_channel}")
    run_build(s)
    held = query(
        wh,
        "select lead_id, column_name, rule, value from published.quarantine__lead_features "
        "order by lead_id",
    )
    assert {(k, c) for k, c, _, _ in held} == {(k, "visits") for k in few} | {
        (odd_channel, "source_channel")
    }
    # Training holds back the same rows (contracts.quarantined is the rule in Python).
    con = duckdb.connect(str(wh))
    frame = con.execute("select * from lead_features order by lead_id").df()
    con.close()
    mask = quarantined(frame, s.defs.models[0].fields)
    assert set(frame.loc[mask, "lead_id"]) == {k for k, *_ in held}
    visits = [r for r in held if r[1] == "visits"]
    assert all(r[2] == "visits must be a number >= 0" and r[3] == "-3" for r in visits)
    scored = {r[0] for r in query(wh, "select distinct lead_id from published.scores")}
    assert scored == set(open_ids) - set(few) - {odd_channel}
    # An unknown country passes: the encoder ignores it and the lead is scored.
    assert odd_country in scored
    # Over the limit: the build fails, names the share, and publishes nothing.
    before = run_counts(wh)
    _corrupt(wh, "update raw.leads set visits = -3 where lead_id % 16 = 0")  # 6.25%
    with pytest.raises(BuildError) as err:
        run_build(s)
    line = next(ln for ln in str(err.value).splitlines() if "quarantine__lead_features" in ln)
    assert "at most 5.0% of the rows may be quarantined for visits" in line, line
    assert run_counts(wh) == before

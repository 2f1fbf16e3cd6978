"""Data checkers 1 and 2 through a real dbt build: clean data passes, with PSI equal to the
Python computation; a moderate shift of one input warns and publishes; a strong one stops
publication naming the model, the column and the PSI; unseen levels are counted; a mean
score outside its band stops publication; the volume check compares with the last build."""

from __future__ import annotations

import dataclasses

import duckdb
import numpy as np
import pytest

from mlsm_py.checks.drift import Reference, drift
from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import BuildError
from mlsm_py.flow.build import run_build
from mlsm_py.spec import Checks, Definitions
from tests.helpers import build_project, load, query, run_counts, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
ROWS = 6000


def _defs(checks: Checks | None = None) -> Definitions:
    base = make("better", population=None)  # score every lead: enough rows for PSI
    models = [dataclasses.replace(m, checks=checks or Checks()) for m in base.models]
    return Definitions(models, base.summaries)


def _reference(wh, fit_id: str, column: str) -> Reference:
    rows = query(
        wh,
        "select kind, bin, upper, level, share from mlsm_registry.fit_input_reference "
        "where fit_id = ? and column_name = ? order by bin",
        [fit_id, column],
    )
    kind = rows[0][0]
    cuts = tuple(r[2] for r in rows if r[1] >= 1 and r[2] is not None)
    levels = tuple(r[3] for r in rows[1:-1]) if kind == "category" else ()
    return Reference(column, kind, cuts, levels, tuple(r[4] for r in rows))


def _python_psi(wh, model: str, column: str) -> tuple[float, float]:
    (fit_id,) = query(
        wh,
        "select fit_id from mlsm_registry.aliases where model_name = ? and alias = 'champion'",
        [model],
    )[0]
    con = duckdb.connect(str(wh))
    frame = con.execute(f"select {column} from lead_features").df()
    con.close()
    return drift(frame[column], _reference(wh, fit_id, column))


def _update(wh, sql: str) -> None:
    con = duckdb.connect(str(wh))
    con.execute(sql)
    con.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    s = session(tmp_path_factory.mktemp("checks"), _defs())
    build_project(s, generate_leads(ROWS, seed=71))
    return s


def test_clean_data_passes_and_psi_equals_python(project):
    wh = project.project.warehouse
    rows = query(
        wh, "select model_name, column_name, psi, unseen_share, level from audit.input_drift"
    )
    assert {r[0] for r in rows} == {"lead_a", "lead_d"}
    assert {r[1] for r in rows} == {f.name for f in project.defs.models[0].fields}
    for model, column, psi, unseen, level in rows:
        want_psi, want_unseen = _python_psi(wh, model, column)
        assert psi == pytest.approx(want_psi, abs=1e-9), (model, column)
        assert unseen == pytest.approx(want_unseen, abs=1e-12)
        assert level == "ok" and psi < 0.1
    # Score checks: every fit, no NULL scores, the score-decile PSI equal to Python's.
    checks = query(wh, "select fit_id, null_share, psi, level from audit.score_checks")
    for fit_id, null_share, psi, level in checks:
        assert null_share == 0 and level == "ok"
        expected = [
            r[0]
            for r in query(
                wh,
                "select observed_rate from mlsm_registry.fit_bins where fit_id = ? and "
                "table_name = 'score_deciles' order by bin",
                [fit_id],
            )
        ]
        got = dict(
            query(
                wh,
                "select decile, count(*) from published.scores where fit_id = ? group by 1",
                [fit_id],
            )
        )
        n = sum(got.values())
        actual = np.maximum([got.get(d, 0) / n for d in range(1, 11)], 1e-4)
        e = np.maximum(expected, 1e-4)
        assert psi == pytest.approx(float(np.sum((actual - e) * np.log(actual / e))), abs=1e-9)


def _shift_until(wh, model: str, column: str, low: float, high: float) -> str:
    """An update of raw.leads moving a share of rows to a high `column` value, chosen so the
    Python PSI lands in [low, high)."""
    con = duckdb.connect(str(wh))
    frame = con.execute(f"select lead_id, {column} from lead_features").df()
    con.close()
    (fit_id,) = query(
        wh,
        "select fit_id from mlsm_registry.aliases where model_name = ? and alias = 'champion'",
        [model],
    )[0]
    ref = _reference(wh, fit_id, column)
    for modulus in range(40, 1, -1):
        moved = frame[column].where(frame["lead_id"] % modulus != 0, 500)
        if low <= drift(moved, ref)[0] < high:
            return f"update raw.leads set {column} = 500 where lead_id % {modulus} = 0"
    raise AssertionError(f"no shift of {column} gives a PSI in [{low}, {high})")


def test_a_moderate_shift_warns_and_publishes(project):
    wh = project.project.warehouse
    _update(wh, _shift_until(wh, "lead_a", "visits", 0.12, 0.2))
    said: list[str] = []
    project.say = said.append
    try:
        row = run_build(project)
    finally:
        project.say = lambda _: None
    warning = next((ln for ln in said if "input drift" in ln), "\n".join(said))
    assert "visits PSI 0.1" in warning and "warn at 0.1, error at 0.25) for lead_a" in warning
    assert query(wh, "select distinct run_id from published.winners") == [(row["run_id"],)]
    # The shifted records were scored by this build (their rows changed).
    assert (
        query(wh, "select count(*) from published.scores where run_id = ?", [row["run_id"]])[0][0]
        > 0
    )
    flagged = query(wh, "select column_name, level from audit.input_drift where level <> 'ok'")
    assert ("visits", "warn") in flagged


def test_a_strong_shift_stops_publication(project):
    wh = project.project.warehouse
    before = run_counts(wh)
    _update(wh, _shift_until(wh, "lead_a", "visits", 0.3, 5.0))
    _update(wh, "update raw.leads set country = 'zz' where lead_id % 9 = 0")
    with pytest.raises(BuildError) as err:
        run_build(project)
    line = next(ln for ln in str(err.value).splitlines() if "input_drift__error" in ln)
    assert "visits PSI" in line and "error at 0.25) for lead_a" in line, line
    assert "country PSI" in line and "unseen levels" in line, line
    assert run_counts(wh) == before
    unseen = query(
        wh,
        "select unseen_share from audit.input_drift where model_name = 'lead_a' "
        "and column_name = 'country'",
    )[0][0]
    assert unseen == pytest.approx(_python_psi(wh, "lead_a", "country")[1], abs=1e-12)
    load(wh, generate_leads(ROWS, seed=71))  # repaired: the next build publishes
    run_build(project)


def test_a_mean_score_outside_its_band_stops_publication(tmp_path):
    s = session(tmp_path, _defs(Checks(score_mean=(0.9, 1.0), volume_change=0.1)))
    with pytest.raises(BuildError) as err:
        build_project(s, generate_leads(ROWS, seed=72))
    line = next(ln for ln in str(err.value).splitlines() if "mean_outside_band" in ln)
    assert "lead_a (champion)" in line and "band 0.9 to 1" in line, line
    assert (
        query(
            s.project.warehouse,
            "select count(*) from mlsm_registry.builds where status = 'published'",
        )[0][0]
        == 0
    )


def test_volume_against_the_last_build_and_freshness(tmp_path):
    # Data from 2025: older than an hour (a warning), younger than a billion hours.
    s = session(tmp_path, _defs(Checks(volume_change=0.1, freshness_hours=(1, 10**9))))
    said: list[str] = []
    load(s.project.warehouse, generate_leads(ROWS, seed=73))
    from mlsm_py.flow.lifecycle import run_train

    run_train(s)
    s.say = said.append
    run_build(s)
    fresh = next(ln for ln in said if "__fresh" in ln)
    assert "the newest row is" in fresh and "hours old" in fresh and "warn at 1 hours" in fresh
    wh = s.project.warehouse
    assert query(wh, "select rows from mlsm_registry.build_volumes")[0][0] == ROWS
    load(wh, generate_leads(ROWS * 2 // 3, seed=73))  # a third of the rows went missing
    with pytest.raises(BuildError) as err:
        run_build(s)
    line = next(ln for ln in str(err.value).splitlines() if "volume_change" in ln)
    assert f"{ROWS * 2 // 3:,} rows against {ROWS:,} in the last published build" in line, line

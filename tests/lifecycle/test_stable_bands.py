"""Stable outputs: a lead's percentile and decile come from its fit's breakpoints stored at
training, so scoring the same leads inside a batch ten times larger, with a shifted
distribution, gives every one of them the same bands. And the bands SQL gives the same result
on DuckDB (an ASOF join) and PostgreSQL (a range join) as Python."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mlsm_py.dbt import runner
from mlsm_py.dbt.unit_tests import decile
from mlsm_py.demo.data import generate_leads
from mlsm_py.flow.build import run_build
from mlsm_py.spec import Checks, Definitions
from mlsm_py.train.summary import Bands, breakpoints, place
from tests.helpers import ROOT, build_project, load, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt
BANDS_SQL = "select lead_id, model_name, score, percentile, decile from published.scores"


def _unchecked():
    """The test shifts the data on purpose: the volume and drift checks would stop it."""
    base = make("weak")
    quiet = Checks(volume_change=None, drift_min_rows=10**9)
    return Definitions([dataclasses.replace(m, checks=quiet) for m in base.models], base.summaries)


def test_bands_do_not_move_when_other_leads_arrive(tmp_path):
    s = session(tmp_path, _unchecked())
    first = generate_leads(3000, seed=41)
    build_project(s, first)
    wh = s.project.warehouse
    before = {(r[0], r[1]): r[2:] for r in query(wh, BANDS_SQL)}
    assert before and len({v[2] for v in before.values()}) > 3  # several deciles in use
    # Ten times more open leads, with three times the visits: a shifted batch.
    more = generate_leads(30_000, seed=42)
    more = more.set_column(
        more.schema.get_field_index("lead_id"),
        "lead_id",
        pc.add(more["lead_id"], 1_000_000),
    )
    more = more.set_column(
        more.schema.get_field_index("visits"), "visits", pc.multiply(more["visits"], 3)
    )
    more = more.set_column(
        more.schema.get_field_index("converted"),
        "converted",
        pa.nulls(len(more), more.schema.field("converted").type),
    )
    load(wh, pa.concat_tables([first, more.cast(first.schema)]))
    run_build(s)
    after = {(r[0], r[1]): r[2:] for r in query(wh, BANDS_SQL)}
    assert len(after) > 10 * len(before)
    assert all(after[k] == v for k, v in before.items())


def _project(tmp_path, fits: dict[str, np.ndarray], scores: list[tuple]) -> object:
    """A two-model dbt project: the bands of `fits` and a table of scores placed on them."""
    d = tmp_path / "bands_project"
    (d / "models").mkdir(parents=True)
    (d / "dbt_project.yml").write_text(
        "name: bands_check\nversion: '1.0.0'\nconfig-version: 2\nprofile: bands\n"
        "models:\n  bands_check:\n    +materialized: table\n"
    )
    (d / "packages.yml").write_text(f"packages:\n  - local: {ROOT / 'macros'}\n")
    dsn = dict(kv.split("=", 1) for kv in os.environ.get("MLSM_PG_DSN", "").split())
    pg = (
        f"    postgres:\n      type: postgres\n      host: {dsn.get('host')}\n"
        f"      port: {dsn.get('port', 5432)}\n      user: {dsn.get('user')}\n"
        f"      password: {dsn.get('password', '')}\n      dbname: {dsn.get('dbname')}\n"
        "      schema: mlsm_bands_check\n      threads: 1\n"
        if dsn
        else ""
    )
    (d / "profiles.yml").write_text(
        "bands:\n  target: duckdb\n  outputs:\n    duckdb:\n      type: duckdb\n"
        "      path: \"{{ env_var('MLSM_WAREHOUSE') }}\"\n" + pg
    )
    rows = []
    for fit, points in fits.items():
        b = Bands.of(points)
        for band, lo, up in zip(b.band, b.lower, b.upper, strict=True):
            up_sql = "null" if np.isnan(up) else repr(float(up))
            rows.append(f"('{fit}', {int(band)}, {float(lo)!r}, {up_sql})")
    (d / "models" / "bands.sql").write_text(
        "select fit_id, band, cast(lower_bound as {{ mlsm.type_double() }}) as lower,\n"
        "    cast(upper_bound as {{ mlsm.type_double() }}) as upper\n"
        f"from (values {', '.join(rows)}) as t(fit_id, band, lower_bound, upper_bound)\n"
    )
    values = ", ".join(
        f"({k}, '{f}', {'null' if v is None else repr(float(v))})" for k, f, v in scores
    )
    (d / "models" / "placed.sql").write_text(
        "with\n\nscored as (\n\n    select lead_id, fit_id,\n"
        "        cast(score_value as {{ mlsm.type_double() }}) as score\n"
        f"    from (values {values}) as t(lead_id, fit_id, score_value)\n\n),\n\n"
        "bands as (\n\n    select * from {{ ref('bands') }}\n\n),\n\n"
        "final as (\n\n    {{ mlsm.place_in_bands('scored', 'bands') | indent(4) }}\n\n)\n\n"
        "select * from final\n"
    )
    return d


def test_bands_are_the_same_on_duckdb_postgres_and_python(tmp_path, pg_engine):
    rng = np.random.default_rng(5)
    fits = {
        "fit_a": breakpoints(rng.beta(2, 5, 5000)),
        "fit_b": breakpoints(np.round(rng.normal(0, 3, 5000), 1)),  # repeated breakpoints
    }
    scores = []
    for fit, points in fits.items():
        probes = [None, points[0] - 1, *points[::7], points[-1], points[-1] + 1]
        probes += list(rng.uniform(points[0], points[-1], 60))
        probes += [float(np.nextafter(p, np.inf)) for p in points[::11]]
        scores += [(len(scores) + i, fit, p) for i, p in enumerate(probes)]
    d = _project(tmp_path, fits, scores)
    wh = tmp_path / "bands.duckdb"
    got = {}
    for target in ("duckdb", "postgres"):
        ctx = runner.DbtContext(d, wh, target, tmp_path / "logs")
        outcome = runner.run(ctx, ["build"])
        assert outcome.success, outcome.failures
        sql = "select lead_id, percentile, decile from {}placed order by lead_id"
        if target == "duckdb":
            got[target] = query(wh, sql.format(""))
        else:
            table = pg_engine.fetch_arrow(sql.format("mlsm_bands_check."))
            columns = (table[c].to_pylist() for c in table.column_names)
            got[target] = list(zip(*columns, strict=True))
    for k, fit, v in scores:
        want = None if v is None else float(place(np.array([v]), Bands.of(fits[fit]))[0])
        for target in got:
            lead, pct, dec = got[target][k]
            assert lead == k
            if want is None:
                assert pct is None and dec is None
            else:
                assert abs(pct - want) <= 1e-9, (target, k, v, pct, want)
                assert dec == decile(want), (target, k)

"""Hostile category values through the whole dbt path: quotes, `;`, `--`, newlines, Jinja
delimiters and Unicode are learned as levels, compiled into string literals, rendered by dbt
literally, and scored exactly as the library scores them."""

from __future__ import annotations

import dataclasses

import duckdb
import pyarrow as pa
import pytest

from mlsm_py.demo.data import generate_leads
from mlsm_py.spec import Definitions, SummaryModel
from models_py import MODELS
from models_py.leads import FIELDS
from tests.helpers import build_project, published_vs_library, session

pytestmark = pytest.mark.dbt
ROWS = 2500
TOLERANCE = 1e-9
# Lower case and trimmed: staging applies lower(trim(industry)).
HOSTILE = [
    "o'reilly; drop table raw.leads; --",
    '{{ env_var("mlsm_probe", "evaluated") }}',
    "{% raw %}x{% endraw %}",
    "{# comment #}",
    "line\nbreak",
    'say "hi" -- /* not a comment */',
    "zürich ✓ ☃",
]


def _models():
    # No accepted-levels contract on industry: the hostile values are legitimate data here.
    fields = tuple(
        dataclasses.replace(f, levels=None) if f.name == "industry" else f for f in FIELDS
    )
    keep = {"lead_logreg", "lead_lgbm"}
    # Every lead is scored (no population), so the hostile rows all reach the score models.
    return [
        dataclasses.replace(m, fields=fields, population=None) for m in MODELS if m.name in keep
    ]


def _hostile_leads() -> pa.Table:
    table = generate_leads(ROWS, seed=11)
    industry = table.column("industry").to_pylist()
    for i in range(0, ROWS, 3):
        industry[i] = HOSTILE[(i // 3) % len(HOSTILE)]
    idx = table.schema.get_field_index("industry")
    return table.set_column(idx, "industry", pa.array(industry, pa.string()))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    models = _models()
    summary = SummaryModel("lead_winner", tuple(m.name for m in models))
    s = session(tmp_path_factory.mktemp("hostile"), Definitions(models, [summary]))
    build_project(s, _hostile_leads())
    return s


def test_hostile_levels_are_learned_and_compiled(built):
    s = built
    con = duckdb.connect(str(s.project.warehouse))
    try:
        seen = {r[0] for r in con.execute("select distinct industry from lead_features").fetchall()}
        (template,) = con.execute(
            "select f.dbt_sql from mlsm_registry.fits f join mlsm_registry.aliases a "
            "using (fit_id) where a.model_name = 'lead_logreg'"
        ).fetchone()
    finally:
        con.close()
    assert set(HOSTILE) <= seen
    on_disk = (s.project.dbt_dir / "models" / "scores" / "score__lead_logreg.sql").read_text()
    # No Jinja delimiter survives in the file dbt reads...
    body = on_disk.split("\n", 5)[-1]
    for delimiter in ("{{ env_var", "{% raw", "{# comment"):
        assert delimiter not in body
    assert template.split("FROM")[0] in on_disk


def test_dbt_renders_hostile_levels_literally(built):
    rendered = next((built.project.dbt_dir / "target").rglob("score__lead_logreg.sql")).read_text()
    # ... and dbt's rendering gives back every level as a literal, not evaluated.
    for level in HOSTILE:
        assert "'" + level.replace("'", "''") + "'" in rendered, level
    assert "'evaluated'" not in rendered


def test_hostile_rows_score_exactly_as_the_library(built):
    diffs = published_vs_library(built)
    assert max(diffs.values()) <= TOLERANCE, diffs

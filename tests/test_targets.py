"""The warehouse as a dbt target: resolving it from the profile, the route choice per target
(PostgreSQL has no Python models), and mlsm's own SQL transpiled for PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier

from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.path import choose_path
from mlsm_py.errors import MlsmError, SpecError
from mlsm_py.flow.compiled import _route
from mlsm_py.parity.gate import check_parity
from mlsm_py.spec import Field, Model, TimeSplit
from mlsm_py.warehouse import targets
from mlsm_py.warehouse.connection import transpile

PROFILE = """\
mlsm:
  target: duckdb
  outputs:
    duckdb:
      type: duckdb
      path: "{{ env_var('MLSM_WAREHOUSE', 'x.duckdb') }}"
    postgres:
      type: postgres
      host: "{{ env_var('T_PG_HOST', 'db.example') }}"
      port: 5433
      user: u
      password: "{{ env_var('T_PG_PASSWORD', '') }}"
      dbname: leads
      schema: public
    snow:
      type: snowflake
      account: x
    lake:
      type: spark
      method: session
"""


@pytest.fixture
def dbt_dir(tmp_path):
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: mlsm\n")
    (tmp_path / "profiles.yml").write_text(PROFILE)
    return tmp_path


def test_the_profile_default_is_duckdb_on_the_warehouse_file(dbt_dir, tmp_path):
    t = targets.resolve(dbt_dir, None, tmp_path / "wh" / "m.duckdb", {})
    assert (t.kind, t.dialect, t.python_route, t.state) == (
        "duckdb",
        "duckdb",
        True,
        tmp_path / "wh" / "m.duckdb",
    )


def test_a_postgres_target_reads_its_settings_as_dbt_renders_them(dbt_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("T_PG_HOST", "10.0.0.5")
    monkeypatch.setenv("T_PG_PASSWORD", "p w'x")
    t = targets.resolve(dbt_dir, "postgres", tmp_path / "wh" / "m.duckdb", {})
    assert (t.kind, t.dialect, t.python_route, t.readers_copy) == (
        "postgres",
        "postgres",
        False,
        False,
    )
    assert t.dsn() == "host=10.0.0.5 port=5433 user=u password='p w\\'x' dbname=leads"
    # Local state (artifacts, manifest, lock) sits under warehouse/<target>.
    assert t.state == tmp_path / "wh" / "postgres"


def test_unknown_and_unsupported_targets_are_refused_by_name(dbt_dir, tmp_path):
    with pytest.raises(MlsmError, match=r"'prod' is not in .*: duckdb, lake, postgres, snow"):
        targets.resolve(dbt_dir, "prod", tmp_path / "m.duckdb", {})
    with pytest.raises(MlsmError, match=r"'snow' is a 'snowflake' target; mlsm runs on duckdb"):
        targets.resolve(dbt_dir, "snow", tmp_path / "m.duckdb", {})
    with pytest.raises(MlsmError, match=r"'lake' is a Spark target: .* not a project warehouse"):
        targets.resolve(dbt_dir, "lake", tmp_path / "m.duckdb", {})


def test_without_a_profile_the_warehouse_file_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: mlsm\n")
    t = targets.resolve(tmp_path, None, tmp_path / "m.duckdb", {})
    assert t.kind == "duckdb" and t.state == tmp_path / "m.duckdb"


def test_registry_sql_is_transpiled_for_postgres():
    assert transpile("select * from t where a = ? and b like 'x%'", "postgres") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%'"
    )
    ddl = transpile("create table if not exists s.t (a varchar not null, b double)", "postgres")
    assert ddl == "CREATE TABLE IF NOT EXISTS s.t (a TEXT NOT NULL, b DOUBLE PRECISION)"


# -- the route per target ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(4000, 4)), columns=[f"x{i}" for i in range(4)])
    X.iloc[::17, 1] = np.nan
    y = ((X.x0 * X.x1.fillna(0) + np.sin(3 * X.x2) + X.x3) > 0).astype(int).to_numpy()
    return X, y


def _model(estimator, **more) -> Model:
    return Model(
        name="deep",
        version=1,
        status="live",
        features="f",
        key="k",
        target="y",
        fields=tuple(Field(f"x{i}", "double") for i in range(4)),
        estimator=estimator,
        split=TimeSplit("t"),
        **more,
    )


def _pg(tmp_path) -> targets.PostgresTarget:
    return targets.PostgresTarget("postgres", {"type": "postgres"}, tmp_path / "postgres")


def test_a_deep_forest_goes_to_sql_on_postgres_and_passes_parity(data, pg_engine, tmp_path):
    X, y = data
    forest = RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0).fit(X, y)
    assembled = assemble(forest)
    assert choose_path(forest, assembled).path == "python"  # what DuckDB would choose
    route, reason, _, _ = _route(_model(forest), forest, _pg(tmp_path))
    assert route == "sql" and "runs SQL models only" in reason
    report = check_parity(forest, pg_engine, X.iloc[:600], assembled=assembled)
    assert report.passed and report.rows_checked >= 600, report.worst_row


def test_an_estimator_sql_cannot_express_is_refused_on_postgres(data, tmp_path):
    X, y = data
    knn = KNeighborsClassifier().fit(X.fillna(0), y)
    with pytest.raises(SpecError) as err:
        _route(_model(knn), knn, _pg(tmp_path))
    text = str(err.value)
    assert "model 'deep'" in text and "dbt target 'postgres'" in text
    assert "cannot run the Python route" in text and "(duckdb)" in text
    # On DuckDB the same estimator takes the Python route.
    assert _route(_model(knn), knn, None)[0] == "python"


def test_a_declared_python_route_is_refused_on_postgres(data, tmp_path):
    X, y = data
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    with pytest.raises(SpecError, match="declares scoring_path='python'.*'postgres'"):
        _route(_model(forest, scoring_path="python"), forest, _pg(tmp_path))

"""Shared fixtures: the second engines (PostgreSQL, Spark).

PostgreSQL comes from MLSM_PG_DSN, which .ci/run sets after starting a throw-away cluster on
127.0.0.1. Locally, tests that need it skip when it is unset; in CI (CI=true) a missing
PostgreSQL fails them instead, so CI can never go green without having run them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PG_DSN_VAR = "MLSM_PG_DSN"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run in CI, not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_engine():
    """A PostgresEngine on MLSM_PG_DSN (one connection for the session)."""
    dsn = os.environ.get(PG_DSN_VAR)
    if not dsn:
        _missing(f"{PG_DSN_VAR} is not set; .ci/run starts PostgreSQL and sets it")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _missing("psycopg2 is not installed; pip install -e '.[test]'")
    from mlsm_py.warehouse.engines import PostgresEngine

    # The DSN is set, so PostgreSQL is meant to be there: a failed connection is an error.
    engine = PostgresEngine(dsn)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory):
    """A local one-core SparkSession started in a temp dir (Spark writes derby.log,
    metastore_db/ and spark-warehouse/ into its working directory)."""
    pytest.importorskip("pyspark", reason="pyspark is not installed; pip install -e '.[spark]'")
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    workdir: Path = tmp_path_factory.mktemp("spark")
    cwd = Path.cwd()
    # The JVM inherits the working directory it is started in; ours is restored at once.
    os.chdir(workdir)
    try:
        spark = (
            SparkSession.builder.master("local[1]")
            .appName("mlsm-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "1")
            .config("spark.sql.warehouse.dir", str(workdir / "spark-warehouse"))
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={workdir}")
            .getOrCreate()
        )
    finally:
        os.chdir(cwd)
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()

"""The A/B split's record-to-arm assignment: md5 of salt:key, the same number in Python, in
DuckDB and in PostgreSQL (each engine's macro, rendered from the macro package itself)."""

from __future__ import annotations

import duckdb
import jinja2
import pytest

from mlsm_py.errors import SpecError
from mlsm_py.spec_summary import BUCKETS, Split
from tests.helpers import ROOT

KEYS = list(range(1, 20001))


def _bucket_sql(dialect: str, text: str) -> str:
    """The package's md5_bucket macro for `dialect`, rendered with plain Jinja."""
    source = (ROOT / "macros" / "macros" / "md5_bucket.sql").read_text()
    module = jinja2.Environment().from_string(source).module
    return str(getattr(module, f"{dialect}__md5_bucket")(text)).strip()


def _python_buckets(salt: str) -> list[int]:
    import hashlib

    return [int(hashlib.md5(f"{salt}:{k}".encode()).hexdigest()[:8], 16) for k in KEYS]


def test_duckdb_bucket_equals_python():
    expr = _bucket_sql("default", "'s1:' || cast(k as varchar)")
    rows = (
        duckdb.connect()
        .execute(f"select k, {expr} from unnest(?::bigint[]) as t(k) order by k", [KEYS])
        .fetchall()
    )
    assert [b for _, b in rows] == _python_buckets("s1")


def test_postgres_bucket_equals_python(pg_engine):
    expr = _bucket_sql("postgres", "'s1:' || cast(k as text)")
    table = pg_engine.fetch_arrow(
        f"select k, {expr} as b from generate_series(1, {len(KEYS)}) as t(k) order by k"
    )
    assert table.column("b").to_pylist() == _python_buckets("s1")


def test_arms_follow_the_declared_shares():
    split = Split((("a", 0.9), ("b", 0.1)), salt="q4")
    arms = [split.arm_of(k) for k in KEYS]
    assert abs(arms.count("b") / len(arms) - 0.1) < 0.01
    assert split.upper_bounds()[-1] == ("b", BUCKETS)
    assert [split.arm_of(k) for k in KEYS] == arms  # stable
    other = Split((("a", 0.9), ("b", 0.1)), salt="q5")
    assert [other.arm_of(k) for k in KEYS] != arms  # a new salt reshuffles


def test_split_rules():
    with pytest.raises(SpecError, match="add up to 1"):
        Split((("a", 0.9), ("b", 0.2)), salt="x")
    with pytest.raises(SpecError, match="salt"):
        Split((("a", 0.5), ("b", 0.5)), salt="it's")
    with pytest.raises(SpecError, match="at least two arms"):
        Split((("a", 1.0),), salt="x")

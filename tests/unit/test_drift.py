"""Input drift in Python and in the generated SQL: the bins of a value (NULL and NaN their own,
boundaries, infinities, unseen levels) and the PSI against an independent computation."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from mlsm_py.checks.drift import EPS, assign, drift, reference
from mlsm_py.dbt.checks_sql import _case
from mlsm_py.spec import Field


def _sql(case: str) -> str:
    return case.replace("{{ mlsm.type_double() }}", "double").replace(
        "{{ dbt.type_string() }}", "varchar"
    )


def test_numeric_bins_in_sql_equal_python():
    rng = np.random.default_rng(3)
    train = pd.Series(np.round(rng.gamma(2, 3, 4000), 1))
    f = Field("x", "double")
    ref = reference(train, f)
    cuts = list(ref.cuts)
    probes = [None, np.nan, -np.inf, np.inf, *cuts, *(np.nextafter(c, np.inf) for c in cuts)]
    probes += list(rng.uniform(-5, 40, 200))
    col = pd.Series(probes, dtype="float64")
    case, _ = _case("x", "numeric", ref.rows(), True)
    con = duckdb.connect()
    con.execute("create table t (i integer, x double)")
    con.executemany("insert into t values (?, ?)", [[i, v] for i, v in enumerate(probes)])
    got = [r[0] for r in con.execute(f"select {_sql(case)} from t order by i").fetchall()]
    assert got == assign(col, ref).tolist()
    assert got[0] == got[1] == 0  # NULL and NaN: the missing bin
    assert got[2] == 1 and got[3] == len(cuts) + 1


def test_category_bins_and_unseen_levels():
    train = pd.Series(["de", "fr", None, "de", "gb"] * 100)
    f = Field("country", "category")
    ref = reference(train, f)
    assert ref.levels == ("de", "fr", "gb") and ref.shares[0] == pytest.approx(0.2)
    probes = ["de", "fr", "gb", None, "zz", "DE"]
    case, unseen = _case("country", "category", ref.rows(), False)
    con = duckdb.connect()
    con.execute("create table t (i integer, country varchar)")
    con.executemany("insert into t values (?, ?)", [[i, v] for i, v in enumerate(probes)])
    got = [r[0] for r in con.execute(f"select {_sql(case)} from t order by i").fetchall()]
    assert got == assign(pd.Series(probes), ref).tolist() == [1, 2, 3, 0, unseen, unseen]
    value, unseen_share = drift(pd.Series(probes), ref)
    assert unseen_share == pytest.approx(2 / 6)


def test_psi_equals_an_independent_computation():
    rng = np.random.default_rng(9)
    f = Field("x", "integer")
    train = pd.Series(rng.poisson(5, 5000))
    now = pd.Series(rng.poisson(6, 3000))
    ref = reference(train, f)
    got, _ = drift(now, ref)
    # Independently: pandas bins on the same cuts, shares floored at EPS.
    edges = [-np.inf, *ref.cuts, np.inf]
    e = pd.cut(train, edges, right=True).value_counts(normalize=True, sort=False).to_numpy()
    a = pd.cut(now, edges, right=True).value_counts(normalize=True, sort=False).to_numpy()
    e, a = np.maximum(e, EPS), np.maximum(a, EPS)
    want = float(np.sum((a - e) * np.log(a / e))) + 0.0  # no missing values: bin 0 empty
    assert got == pytest.approx(want, abs=1e-12)
    assert drift(train, ref)[0] == pytest.approx(0, abs=1e-12)  # training against itself

"""A record's segment is named the same in Python (training) and in SQL (the build's
routing): one column or several, text or integers, NULLs giving no segment."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from mlsm_py import segments
from mlsm_py.errors import SpecError
from mlsm_py.spec import Field, Model, TimeSplit


def _model(**kw) -> Model:
    fields = (
        Field("country", "category"),
        Field("tier", "integer"),
        Field("visits", "double"),
    )
    base = dict(
        name="m",
        version=1,
        status="live",
        features="f",
        key="k",
        target="y",
        fields=fields,
        estimator=None,
        split=TimeSplit("t"),
    )
    return Model(**{**base, **kw})


def test_labels_in_python_equal_the_sql_expression():
    df = pd.DataFrame(
        {
            "k": range(6),
            "country": ["de", "fr", None, "de", "x|y", "us"],
            "tier": [1.0, 2.0, 3.0, np.nan, 10.0, 2.0],  # integers read as floats with a NULL
        }
    )
    con = duckdb.connect()
    con.register("df", df)
    for by in ("country", "tier", ("country", "tier")):
        m = _model(segment_by=by)
        want = segments.labels(df, m).tolist()
        got = [r[0] for r in con.execute(f"select {segments.sql(m)} from df order by k").fetchall()]
        assert got == want, by
    m = _model(segment_by=("country", "tier"))
    assert segments.labels(df, m).tolist()[:4] == ["de|1", "fr|2", None, None]


@pytest.mark.parametrize(
    "kw, text",
    [
        (dict(segment_by="visits"), "category or integer field"),
        (dict(segment_by="nowhere"), "not declared"),
        (dict(segment_by=("country", "country")), "distinct"),
        (dict(segment_by="country", segment_min_rows=0), "segment_min_rows"),
    ],
)
def test_bad_segment_declarations_are_refused(kw, text):
    with pytest.raises(SpecError, match=text):
        _model(**kw)


def test_segment_by_is_normalised_to_a_tuple():
    assert _model(segment_by="country").segments == ("country",)
    assert _model().segments == ()

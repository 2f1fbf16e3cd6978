from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression

from mlsm_py.errors import SpecError
from mlsm_py.spec import Field, Model, SummaryModel, TimeSplit, check_project


def _model(name="m1", status="live", **kw):
    args = dict(
        name=name,
        version=1,
        status=status,
        features="feats",
        key="id",
        target="y",
        fields=(Field("x", "double"),),
        estimator=LogisticRegression(),
        split=TimeSplit("created_at"),
    )
    args.update(kw)
    return Model(**args)


@pytest.mark.parametrize("bad", ["Lead", "1lead", "lead-score", "", "lead score", "lead;drop"])
def test_bad_names_are_refused_with_the_rule(bad):
    with pytest.raises(SpecError, match=r"\[a-z\]\[a-z0-9_\]\*"):
        _model(name=bad)


def test_status_version_and_fields_rules():
    with pytest.raises(SpecError, match="status 'prod'"):
        _model(status="prod")
    with pytest.raises(SpecError, match="version"):
        _model(version=0)
    with pytest.raises(SpecError, match="declared twice"):
        _model(fields=(Field("x", "double"), Field("x", "double")))
    with pytest.raises(SpecError, match="min 5 is greater than max 1"):
        Field("x", "double", min=5, max=1)
    with pytest.raises(SpecError, match="levels apply to category"):
        Field("x", "double", levels=("a",))


def test_summary_rules():
    live, draft = _model("a"), _model("b", status="draft")
    s = SummaryModel("best", models=("a", "b"))
    assert s.priority == {"a": 1, "b": 2}
    check_project([live, draft], [s])
    with pytest.raises(SpecError, match="unknown models: zz"):
        check_project([live], [SummaryModel("best", models=("a", "zz"))])
    with pytest.raises(SpecError, match="no live input model"):
        check_project([draft], [SummaryModel("best", models=("b",))])
    with pytest.raises(SpecError, match="rule 'lowest'"):
        SummaryModel("best", models=("a",), rule="lowest")


def test_conflicting_contracts_for_one_column():
    a = _model("a", fields=(Field("x", "double", min=0),))
    b = _model("b", fields=(Field("x", "double", min=1),))
    with pytest.raises(SpecError, match="declared differently"):
        check_project([a, b], [])

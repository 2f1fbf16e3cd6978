"""A fit's identity is what it computes: the same on both scoring routes, unchanged by the
artifact's bytes or the model's draft/live status; the score tests follow declared outputs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from mlsm_py.dbt.scores_yml import score_model_yml
from mlsm_py.flow.compiled import compile_fit
from mlsm_py.spec import Field, Model, TimeSplit
from mlsm_py.train.trainer import train


def _model(est, **kw) -> Model:
    return Model(
        "m",
        1,
        "live",
        "feats",
        "id",
        "y",
        (Field("x", "double"), Field("z", "double")),
        est,
        TimeSplit("t", 30, 0),
        **kw,
    )


def _con() -> duckdb.DuckDBPyConnection:
    rng = np.random.default_rng(1)
    n = 600
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "t": pd.Timestamp("2025-01-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 200, n)), unit="D"),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
        }
    )
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-df.x))).astype(int)
    con = duckdb.connect()
    con.execute("create table feats as select * from df")
    return con


def test_fit_id_is_the_same_on_both_routes_and_statuses():
    con = _con()
    sql = compile_fit(train(con, _model(LogisticRegression(), scoring_path="sql")), con)
    py = compile_fit(train(con, _model(LogisticRegression(), scoring_path="python")), con)
    draft = compile_fit(
        train(
            con,
            dataclasses.replace(_model(LogisticRegression(), scoring_path="sql"), status="draft"),
        ),
        con,
    )
    assert sql.fit_id == py.fit_id == draft.fit_id
    assert sql.artifact_sha256 != py.artifact_sha256  # skops bytes differ; the id does not
    assert (sql.route, py.route) == ("sql", "python")
    assert "FIT_ID = " + repr(py.fit_id) in py.template and "ARTIFACT" not in py.template
    again = compile_fit(train(con, _model(LogisticRegression(), scoring_path="python")), con)
    assert again.template == py.template  # the generated Python model is byte-stable


def test_score_tests_follow_the_declared_outputs():
    con = _con()
    c = compile_fit(train(con, _model(RidgeClassifier())), con)
    assert c.outputs == [{"name": "score", "role": "decision", "type": "double"}]
    fit = {"fit_id": c.fit_id, "outputs": json.dumps(c.outputs)}
    yml = score_model_yml("score__m", c.fit.model, "champion", fit)
    tests = str(yml)
    assert "between_0_and_1" not in tests and "Decision function" in tests
    proba = {**fit, "outputs": json.dumps([{**c.outputs[0], "role": "probability"}])}
    assert "between_0_and_1" in str(score_model_yml("score__m", c.fit.model, "champion", proba))


def test_importing_definitions_does_not_load_the_ml_stack():
    code = (
        "import sys, mlsm_py, mlsm_py.spec, mlsm_py.project; "
        "print(sorted(m for m in ('lightgbm', 'xgboost', 'mlsm_py.compile') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

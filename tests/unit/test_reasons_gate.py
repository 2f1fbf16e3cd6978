"""The reason codes' gate on its own: it passes what the compiler emits and refuses SQL whose
published reasons differ from the serving evaluator's."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlsm_py.compile import reasons as rc
from mlsm_py.compile.assemblers import assemble
from mlsm_py.compile.emitter import SqlEmitter
from mlsm_py.errors import ParityError
from mlsm_py.parity import reasons_gate
from mlsm_py.parity.gate import PARITY_TABLE


def _data(n: int = 1500) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.exponential(size=n),
            "c": rng.choice(["x", "y", "z"], size=n).astype(object),
        }
    )
    df.loc[rng.uniform(size=n) < 0.1, "a"] = np.nan
    y = (df.a.fillna(0) + (df.c == "y") + rng.normal(size=n) > 0.5).astype(int)
    return df, y.to_numpy()


def _pipeline(final) -> Pipeline:
    cols = ColumnTransformer(
        [
            ("num", Pipeline([("i", SimpleImputer()), ("s", StandardScaler())]), ["a", "b"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["c"]),
        ]
    )
    return Pipeline([("cols", cols), ("m", final)])


@pytest.mark.parametrize("final", ["logistic", "lgbm"])
def test_gate_passes_the_emitted_sql_and_refuses_a_changed_one(final):
    df, y = _data()
    est = LogisticRegression() if final == "logistic" else LGBMClassifier(n_estimators=20)
    model = _pipeline(est).fit(df, y)
    means = rc.linear_means(model, df) if final == "logistic" else None
    c = rc.contributions(model, means=means)
    assembled = assemble(model)
    cols = [*assembled.outputs(), *rc.top_reasons(c, 2)]
    sql = SqlEmitter("duckdb").render(rc.as_assembled(assembled.inputs, cols), PARITY_TABLE, "k")
    good = reasons_gate.check_reasons(c, 2, duckdb.connect(), df, assembled, sql, "k")
    assert good.passed and good.rows_checked > len(df)
    assert good.max_sum_diff <= 1e-9 and good.max_sql_evaluator_diff <= 1e-12
    # Published contributions 1% off: the gate refuses the fit.
    off = "reason_1_contribution * 1.01 as reason_1_contribution"
    bad_sql = f"select * replace ({off}) from ({sql})"
    bad = reasons_gate.check_reasons(c, 2, duckdb.connect(), df, assembled, bad_sql, "k")
    assert not bad.passed and bad.max_sql_evaluator_diff > 1e-6
    with pytest.raises(ParityError, match="reason codes failed"):
        reasons_gate.gate("m", 1, bad)

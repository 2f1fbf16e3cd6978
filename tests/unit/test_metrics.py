"""The stored evaluation against independent computations: capture and lift at the top
shares by a plain sort, lift per decile and the calibration table by pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mlsm_py.train.metrics import bins, evaluate


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    score = rng.beta(2, 6, 5000)
    y = (rng.uniform(size=5000) < score).astype(float)
    return y, score


def test_metrics_equal_independent_computation(data):
    y, score = data
    m = evaluate(y, score)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, score), abs=1e-12)
    ranked = y[np.argsort(-score)]  # scores are continuous: no ties to break
    for k in (1, 5, 10, 20):
        top = int(np.ceil(len(y) * k / 100))
        want = ranked[:top].sum() / y.sum()
        assert m[f"capture_at_{k}"] == pytest.approx(want, abs=1e-12)
        assert m[f"lift_at_{k}"] == pytest.approx(want / (k / 100), abs=1e-12)
    assert m["top_decile_capture"] == m["capture_at_10"]


def test_lift_per_decile_and_calibration_equal_pandas(data):
    y, score = data
    rows = pd.DataFrame(bins(y, score, "classifier"))
    frame = pd.DataFrame({"y": y, "s": score})
    frame["decile"] = pd.qcut(frame["s"].rank(method="first"), 10, labels=False) + 1
    lift = rows[rows.table_name == "lift_by_decile"].set_index("bin")
    by = frame.groupby("decile")
    assert lift["rows"].tolist() == by.size().tolist()
    np.testing.assert_allclose(lift["observed_rate"], by["y"].mean(), atol=1e-12)
    np.testing.assert_allclose(lift["lift"], by["y"].mean() / y.mean(), atol=1e-12)
    assert lift.loc[10, "lift"] > 1 > lift.loc[1, "lift"]
    cal = rows[rows.table_name == "calibration"].set_index("bin")
    frame["bin"] = np.minimum((frame["s"] * 10).astype(int), 9) + 1
    by = frame.groupby("bin")
    assert cal.loc[by.size().index, "rows"].tolist() == by.size().tolist()
    np.testing.assert_allclose(cal.loc[by.size().index, "mean_score"], by["s"].mean(), atol=1e-12)
    np.testing.assert_allclose(
        cal.loc[by.size().index, "observed_rate"], by["y"].mean(), atol=1e-12
    )
    assert cal["rows"].sum() == len(y)

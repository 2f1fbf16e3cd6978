from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlsm_py.errors import ArtifactError
from mlsm_py.registry import artifacts


def _fit():
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    return LogisticRegression().fit(X, (X.a > 9).astype(int))


def test_roundtrip_predicts_the_same(tmp_path):
    est = _fit()
    path = tmp_path / "m.skops"
    sha = artifacts.save(est, path)
    back = artifacts.load(path, sha)
    X = pd.DataFrame({"a": [1.0, 15.0], "b": [0.0, 2.0]})
    assert np.array_equal(back.predict_proba(X), est.predict_proba(X))


def test_altered_artifact_is_refused_before_loading(tmp_path):
    path = tmp_path / "m.skops"
    sha = artifacts.save(_fit(), path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="altered: sha256"):
        artifacts.load(path, sha)


def test_missing_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="missing"):
        artifacts.load(tmp_path / "nope.skops", "0" * 64)

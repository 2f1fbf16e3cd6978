"""Shared test helpers: a throw-away copy of the dbt project and macro package."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_project(dest: Path) -> Path:
    """Copy dbt_project/ and macros/ (the local package it points at) without build output."""
    ignore = shutil.ignore_patterns("target", "logs", "dbt_packages", "package-lock.yml")
    shutil.copytree(ROOT / "dbt_project", dest / "dbt_project", ignore=ignore)
    shutil.copytree(ROOT / "macros", dest / "macros", ignore=ignore)
    return dest / "dbt_project"


def published_vs_library(warehouse: Path, fits) -> dict[str, float]:
    """Max |published score - library score| per model, over every row of the feature table."""
    import duckdb
    import numpy as np

    from mlsm_py.frames import model_frame
    from mlsm_py.train.trainer import input_types

    out = {}
    con = duckdb.connect(str(warehouse))
    try:
        for fit in fits:
            m = fit.model
            features = con.execute(f"select * from {m.features} order by {m.key}").df()
            got = con.execute(
                "select score from published.scores where model_name = ? order by " + m.key,
                [m.name],
            ).fetchnumpy()["score"]
            X = model_frame(features, input_types(m))
            expected = fit.estimator.predict_proba(X)[:, 1]
            assert len(got) == len(expected), m.name
            out[m.name] = float(np.max(np.abs(got - expected)))
    finally:
        con.close()
    return out

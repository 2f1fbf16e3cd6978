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


def build_project(p, leads):
    """The demo's steps on a test project, quietly: load `leads`, build the features, train,
    compile (parity gate), register, write the dbt models, `dbt build`.
    Returns (compiled fits, build outcome)."""
    from mlsm_py import pipeline
    from mlsm_py.demo.data import load_leads

    with p.connect() as con:
        load_leads(con, leads)
    pipeline.build_features(p)
    fits = pipeline.train_all(p, lambda _: None)
    compiled = pipeline.compile_all(p, fits, lambda _: None)
    pipeline.register(p, compiled)
    pipeline.write_models(p, compiled)
    return compiled, pipeline.runner.build(p.project_dir, p.warehouse)


def zero_probes() -> list[float]:
    """Values around LightGBM's zero band (|x| <= float32(1e-35), read as 0.0) and around
    zero itself."""
    import numpy as np

    from mlsm_py.compile.assemblers.lightgbm import ZERO_THRESHOLD

    return [
        0.0,
        -0.0,
        1e-320,
        -1e-320,
        1e-36,
        -1e-36,
        ZERO_THRESHOLD,
        -ZERO_THRESHOLD,
        float(np.nextafter(ZERO_THRESHOLD, 1.0)),
        float(np.nextafter(-ZERO_THRESHOLD, -1.0)),
        float(np.nextafter(ZERO_THRESHOLD, 0.0)),
        1e-35,
        -1e-35,
    ]


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

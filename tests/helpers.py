"""Shared test helpers: a throw-away project (a copy of the dbt project and macro package,
definitions given in the test), and reading back what a build published."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def copy_project(dest: Path) -> Path:
    """Copy dbt_project/ and macros/ (the local package it points at) without build output."""
    ignore = shutil.ignore_patterns("target", "logs", "dbt_packages", "package-lock.yml")
    shutil.copytree(ROOT / "dbt_project", dest / "dbt_project", ignore=ignore)
    shutil.copytree(ROOT / "macros", dest / "macros", ignore=ignore)
    return dest / "dbt_project"


def session(tmp: Path, defs, warehouse: str = "wh", dbt_dir: Path | None = None):
    """A Session on a copy of the demo's dbt project, with `defs` as its definitions."""
    from mlsm_py.flow.session import Session
    from mlsm_py.project import Project

    dbt_dir = dbt_dir or copy_project(tmp)
    p = Project(tmp, "tests:defs", dbt_dir, tmp / warehouse / "mlsm.duckdb", _definitions=defs)
    return Session(p, say=lambda _: None, actor="tester")


def load(warehouse: Path, leads) -> None:
    from mlsm_py.demo.data import load_leads

    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse))
    try:
        load_leads(con, leads)
    finally:
        con.close()


def build_project(s, leads) -> dict:
    """The first day of a project: load `leads`, `mlsm train`, `mlsm build`. Returns the
    publication log row."""
    from mlsm_py.flow.build import run_build
    from mlsm_py.flow.lifecycle import run_train

    load(s.project.warehouse, leads)
    run_train(s)
    return run_build(s)


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(warehouse))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def run_counts(warehouse: Path, table: str = "scores") -> list[tuple]:
    """(run_id, rows) of a published table, ordered: a table an incremental build merged holds
    the runs that scored its rows, so "nothing was published" compares these."""
    return query(
        warehouse,
        f"select run_id, count(*) from published.{table} group by run_id order by run_id",
    )


def champions(warehouse: Path) -> dict[str, tuple[dict, object]]:
    """{model: (fit row, loaded estimator)} for every champion in the registry."""
    from mlsm_py.registry import artifacts, store

    con = duckdb.connect(str(warehouse))
    try:
        out = {}
        for model, al in store.aliases(con).items():
            row = store.get_fit(con, al[store.CHAMPION])
            path = artifacts.resolve(warehouse, row["artifact_path"])
            out[model] = (row, artifacts.load(path, row["artifact_sha256"]))
        return out
    finally:
        con.close()


def one_champion_each(warehouse: Path) -> dict[str, int]:
    """{model: the most champions any of its fits (global or one segment) has}: 1 is right."""
    rows = query(
        warehouse,
        "select model_name, max(n) from (select model_name, segment, count(*) as n "
        "from mlsm_registry.aliases where alias = 'champion' group by all) group by all",
    )
    return dict(rows)


def routed_library(s, name: str) -> tuple[dict, dict]:
    """({key: score}, {key: fit id}) of every record of the model's population, scored in
    Python by the champion the registry routes it to: its segment's fit, else the global fit."""
    from mlsm_py import segments
    from mlsm_py.estimator import input_types, score_vector
    from mlsm_py.frames import model_frame
    from mlsm_py.registry import artifacts

    wh = s.project.warehouse
    m = s.defs.model(name)
    where = f"where {m.population}" if m.population else ""
    con = duckdb.connect(str(wh))
    try:
        feats = con.execute(f"select * from {m.features} {where} order by {m.key}").df()
        fits = con.execute(
            "select a.segment, f.fit_id, f.artifact_path, f.artifact_sha256 "
            "from mlsm_registry.aliases a join mlsm_registry.fits f using (fit_id) "
            "where a.model_name = ? and a.alias = 'champion'",
            [name],
        ).fetchall()
    finally:
        con.close()
    level = segments.labels(feats, m).to_numpy() if m.segments else np.full(len(feats), None)
    X = model_frame(feats, input_types(m.fields))
    score = np.full(len(feats), np.nan)
    fit_of = np.empty(len(feats), dtype=object)
    own = [seg for seg, *_ in fits if seg is not None]
    for seg, fid, path, sha in fits:
        rows = (level == seg) if seg is not None else ~np.isin(level, own)
        if rows.any():
            est = artifacts.load(artifacts.resolve(wh, path), sha)
            score[rows] = score_vector(est, X[rows])
            fit_of[rows] = fid
    keys = feats[m.key].to_numpy()
    return dict(zip(keys, score, strict=True)), dict(zip(keys, fit_of, strict=True))


def published_vs_library(s) -> dict[str, float]:
    """Max |published champion score - library score| per model, over every record of the
    model's population (a segmented model's records each by its routed fit)."""
    wh = s.project.warehouse
    out = {}
    for m in s.defs.models:
        lib, fit_of = routed_library(s, m.name)
        got = query(
            wh,
            f"select {m.key}, score, fit_id from published.scores where model_name = ? "
            "and role = 'champion'",
            [m.name],
        )
        assert len(got) == len(lib) > 0, m.name
        assert all(fit_of[k] == f for k, _, f in got), m.name
        out[m.name] = max(abs(v - lib[k]) for k, v, _ in got)
    return out


def zero_probes() -> list[float]:
    """Values around LightGBM's zero band (|x| <= float32(1e-35), read as 0.0) and around
    zero itself."""
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


def demo_project(dest: Path) -> Path:
    """A stand-alone copy of this repository's demo project: pyproject.toml with [tool.mlsm],
    the definitions (models_py/), the dbt project and the macro package."""
    copy_project(dest)
    shutil.copytree(
        ROOT / "models_py", dest / "models_py", ignore=shutil.ignore_patterns("__pycache__")
    )
    (dest / "pyproject.toml").write_text(
        '[tool.mlsm]\ndefinitions = "models_py:PROJECT"\ndbt_project = "dbt_project"\n'
        'warehouse = "warehouse/mlsm.duckdb"\n'
    )
    return dest


def mlsm(*args: str, cwd: Path, env: dict | None = None, timeout: int = 900):
    """Run the `mlsm` command as a user would: a new process, in `cwd`."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLSM_WAREHOUSE", None) if env is None or "MLSM_WAREHOUSE" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "mlsm_py.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


def assert_evaluator(report) -> None:
    """The gate's third leg ran and agrees: the serving API's evaluator of the same AST
    scored every checked row within the gate's tolerance of the library."""
    assert report.evaluator_max_scaled_diff is not None, "the evaluator leg did not run"
    assert report.evaluator_max_scaled_diff <= report.tolerance, report.evaluator_worst_row
    assert report.evaluator_rows_above_tolerance == 0

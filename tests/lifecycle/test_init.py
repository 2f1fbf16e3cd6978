"""`mlsm init` -> `mlsm train` -> `mlsm build` in a new directory, as a new user runs it."""

from __future__ import annotations

import pytest

from tests.helpers import mlsm, query

pytestmark = pytest.mark.dbt


def test_init_train_build(tmp_path):
    root = tmp_path / "my_project"
    out = mlsm("init", str(root), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "mlsm train && mlsm build" in out.stdout
    assert (root / "pyproject.toml").read_text().count("[tool.mlsm]") == 1
    for verb in ("train", "build"):
        out = mlsm(verb, cwd=root)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Traceback" not in out.stderr
    wh = root / "warehouse" / "mlsm.duckdb"
    (open_leads,) = query(wh, "select count(*) from lead_features where converted is null")[0]
    (scored, fits) = query(
        wh, "select count(distinct lead_id), count(distinct fit_id) from published.scores"
    )[0]
    assert scored == open_leads > 0 and fits == 1
    assert query(wh, "select status from mlsm_registry.builds")[-1][0] == "published"
    assert (root / "logs" / "dbt.log").is_file()  # dbt's own output went to the log
    status = mlsm("status", cwd=root)
    assert "lead_score" in status.stdout and "stale" not in status.stdout
    # A second init into the same directory refuses instead of overwriting.
    again = mlsm("init", str(root), cwd=tmp_path)
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_project_from_another_directory(tmp_path):
    root = tmp_path / "p"
    assert mlsm("init", str(root), cwd=tmp_path).returncode == 0
    out = mlsm("status", "--project", str(root), cwd=tmp_path)
    # Relative warehouse paths are anchored to the project, not to the current directory.
    assert out.returncode == 1 and str(root / "warehouse" / "mlsm.duckdb") in out.stderr

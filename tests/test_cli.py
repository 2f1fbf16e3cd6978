"""The demo CLI at small size, and its error paths."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlsm_py import cli
from tests.helpers import copy_project

pytestmark = pytest.mark.dbt


def test_demo_end_to_end(tmp_path):
    project = copy_project(tmp_path)
    env = {**os.environ, "MLSM_WAREHOUSE": str(tmp_path / "wh" / "demo.duckdb")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlsm_py.cli",
            "demo",
            "--rows",
            "3000",
            "--project-dir",
            str(project),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for step in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"):
        assert step in text
    assert str(tmp_path / "wh" / "demo.duckdb") in text  # says where the warehouse is
    assert "ROC AUC" in text and "top-10% capture" in text and "max |diff|" in text
    assert "FROM published.winners" in text and "LIMIT 10" in text
    top = text.split("[6/6]")[1].split("The SQL")[0].strip().splitlines()[2:]
    assert len(top) == 10
    assert not any("lead_extra_trees" in line for line in top)  # the draft never wins
    assert (project / "models" / "scores" / "score__lead_lgbm.sql").is_file()

    # `mlsm verify` re-runs the gate on the registered fit, plus fuzzed rows.
    verify = subprocess.run(
        [sys.executable, "-m", "mlsm_py.cli", "verify", "lead_lgbm", "--fuzz", "5000"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert verify.returncode == 0, verify.stderr[-3000:]
    assert "artifact sha256 verified" in verify.stdout
    assert "fuzzed: 5,000 rows checked" in verify.stdout
    assert "0 rows above tolerance" in verify.stdout and "parity holds" in verify.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "mlsm_py.cli", "verify", "no_such_model"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert unknown.returncode == 1
    assert "unknown model 'no_such_model'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_rows_too_small_is_a_usage_error(capsys):
    assert cli.main(["demo", "--rows", "10"]) == 2
    assert "--rows must be at least 1000" in capsys.readouterr().err


def test_parity_failure_stops_before_writing(tmp_path, monkeypatch, capsys):
    """A model whose SQL disagrees with Python is refused: exit 1, the message names the model
    and the worst row, and no dbt model is written."""
    from mlsm_py.compile.assemblers import sklearn_trees

    project = copy_project(tmp_path)
    scores_dir = project / "models" / "scores"
    before = {f.name: f.read_bytes() for f in scores_dir.iterdir()}
    # Naive double comparison instead of scikit-learn's float32 one: routes threshold
    # neighbours the wrong way, which the gate must catch.
    monkeypatch.setattr(sklearn_trees, "float32_split", lambda t: (t, True))
    code = cli.main(
        [
            "demo",
            "--rows",
            "3000",
            "--project-dir",
            str(project),
            "--warehouse",
            str(tmp_path / "wh.duckdb"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "parity failed for model 'lead_forest'" in err and "worst row" in err
    assert "Traceback" not in err
    assert {f.name: f.read_bytes() for f in scores_dir.iterdir()} == before

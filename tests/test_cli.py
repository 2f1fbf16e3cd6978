"""The CLI as a new user runs it: the demo, a second demo against another warehouse, status,
history, verify, and the error paths (one line, no traceback)."""

from __future__ import annotations

import json

import pytest

from mlsm_py import cli
from tests.helpers import demo_project, mlsm, query, run_counts

pytestmark = pytest.mark.dbt


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = demo_project(tmp_path_factory.mktemp("cli"))
    out = mlsm("demo", "--rows", "3000", cwd=root)
    return root, out


def test_demo_end_to_end(demo):
    root, out = demo
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert str(root / "warehouse" / "mlsm.duckdb") in text  # says where the warehouse is
    assert "loading 3,000 synthetic leads" in text
    assert "ROC AUC" in text and "top-10% capture" in text and "max |diff|" in text
    assert "(API evaluator " in text and "4 reasons gated" in text
    assert "is the champion (first fit)" in text and "published run" in text
    assert "FROM published.call_list" in text and "LIMIT 5" in text
    # The summary is evaluated next to its members, and the default rule does not lose.
    assert "lead_winner (rule best_member) on" in text and "loses to" not in text
    # Time passes: the drift of the double-counted visits is a warning, the build publishes,
    # and the first list is judged on the outcomes that arrived.
    drift = next(ln for ln in text.splitlines() if "warning: input_drift" in ln)
    assert "visits PSI" in drift and "(check input_drift__warn)" in drift
    assert text.count("published run") == 2 and "realised: lead_winner on" in text
    top = text.split("top of published.call_list")[1].split("the SQL")[0]
    top = top.strip().splitlines()[2:]
    assert len(top) == 5
    assert [int(line.split()[0]) for line in top] == list(range(1, 6))
    report = root / "reports" / "mlsm-report.html"
    assert f"report: {report}" in text and report.stat().st_size > 10_000
    assert not any("lead_extra_trees" in line for line in top)  # the draft never wins
    assert (root / "dbt_project" / "models" / "scores" / "score__lead_lgbm.sql").is_file()
    # lead_lgbm is fitted per country: one line with the counts, never a line per segment
    # (3,000 leads: every country is below its 3,000-row minimum, the global fit scores all).
    seg = [ln for ln in text.splitlines() if "segment fits by country" in ln]
    assert len(seg) == 1 and "10 level(s) to the fallback" in seg[0], seg
    assert any(
        ln.strip().startswith("lead_lgbm: 0 records by their segment's fit")
        for ln in text.splitlines()
    )
    per_model = query(
        root / "warehouse" / "mlsm.duckdb",
        "select model_name, count(*), count(*) filter (where fallback) from published.scores "
        "where role = 'champion' group by all",
    )
    counts = {m: n for m, n, _ in per_model}
    assert len(set(counts.values())) == 1, counts  # every open lead scored by every model
    assert {m: f for m, _, f in per_model}["lead_lgbm"] == counts["lead_lgbm"]  # all fallback
    assert "Traceback" not in out.stderr and "dbt" not in out.stderr
    # Quiet by default: dbt's own log goes to a file, no colour codes, a page of output.
    assert len(text.splitlines()) < 60, text
    assert "\x1b[" not in text and (root / "logs" / "dbt.log").is_file()


def test_second_demo_keeps_the_data_and_changes_nothing(demo):
    root, first = demo
    wh = root / "warehouse" / "mlsm.duckdb"
    before = query(
        wh, "select lead_id, model_name, fit_id, score from published.scores order by all"
    )
    out = mlsm("demo", "--rows", "5000", cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "raw.leads already holds 4,000 rows: kept (--replace-data regenerates it)" in out.stdout
    assert "every model has a champion" in out.stdout and "time passes" not in out.stdout
    assert query(wh, "select count(*) from raw.leads")[0][0] == 4000
    after = query(
        wh, "select lead_id, model_name, fit_id, score from published.scores order by all"
    )
    assert after == before


def test_demo_on_a_second_warehouse_leaves_the_first_alone(demo):
    """Same project, other warehouse: its fits are not registered in the first, so the
    first publishes only its own champions (the generated files are rewritten from its
    registry by `mlsm build`; plain dbt refuses the other warehouse's fits)."""
    root, _ = demo
    first = root / "warehouse" / "mlsm.duckdb"
    before = query(
        first,
        "select lead_id, model_name, fit_id, score, run_id from published.scores order by all",
    )
    other = root / "other" / "wh.duckdb"
    out = mlsm("demo", "--rows", "4000", "--seed", "7", "--warehouse", str(other), cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (
        query(
            first,
            "select lead_id, model_name, fit_id, score, run_id from published.scores order by all",
        )
        == before
    )
    other_fits = {r[0] for r in query(other, "select fit_id from mlsm_registry.aliases")}
    first_fits = {r[0] for r in query(first, "select fit_id from mlsm_registry.aliases")}
    assert other_fits.isdisjoint(first_fits)
    # The files now hold the other warehouse's fits; building the first rewrites them from its
    # own registry and publishes its own champions again.
    out = mlsm("build", cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rewritten from the registry" in out.stdout
    published = {r[0] for r in query(first, "select distinct fit_id from published.scores")}
    assert published == first_fits
    rows = query(
        first, "select lead_id, model_name, fit_id, score from published.scores order by all"
    )
    assert rows == [r[:4] for r in before]


def test_status_and_history(demo):
    root, _ = demo
    out = mlsm("status", "--json", cwd=root)
    assert out.returncode == 0, out.stderr
    rows = {r["model"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"lead_logreg", "lead_forest", "lead_lgbm", "lead_extra_trees"}
    assert rows["lead_forest"]["route"] == "python" or rows["lead_forest"]["route"] == "sql"
    assert all(r["champion"] and r["metrics"]["roc_auc"] > 0.5 for r in rows.values())
    assert rows["lead_extra_trees"]["status"] == "draft"
    table = mlsm("status", cwd=root)
    assert "lead_lgbm" in table.stdout and "champion" in table.stdout
    hist = mlsm("history", "lead_lgbm", cwd=root)
    assert hist.returncode == 0 and "promoted" in hist.stdout and "first_fit" in hist.stdout
    assert mlsm("--version", cwd=root).stdout.startswith("mlsm ")


def test_verify_and_unknown_model(demo):
    root, _ = demo
    verify = mlsm("verify", "lead_lgbm", "--fuzz", "5000", cwd=root)
    assert verify.returncode == 0, verify.stderr[-3000:]
    assert "artifact sha256 verified" in verify.stdout
    assert "fuzzed: 5,000 rows checked" in verify.stdout
    # The third leg: the API's evaluator on the same rows, within the gate's tolerance.
    assert "serving evaluator (the API's)" in verify.stdout and "(ok)" in verify.stdout
    assert "0 rows above tolerance" in verify.stdout and "parity holds" in verify.stdout
    unknown = mlsm("verify", "no_such_model", cwd=root)
    assert unknown.returncode == 1
    assert "unknown model 'no_such_model'" in unknown.stderr and "Traceback" not in unknown.stderr
    promote = mlsm("promote", "lead_lgbm", cwd=root)
    assert promote.returncode == 1
    assert "has no challenger to promote" in promote.stderr


def test_not_a_project(tmp_path):
    out = mlsm("status", cwd=tmp_path)
    assert out.returncode == 1 and "is not an mlsm project" in out.stderr
    assert "Traceback" not in out.stderr


def test_rows_too_small_is_a_usage_error(capsys):
    assert cli.main(["demo", "--rows", "10"]) == 2
    assert "--rows must be at least 1000" in capsys.readouterr().err


def test_parity_failure_registers_nothing(tmp_path, monkeypatch, capsys):
    """A model whose SQL disagrees with Python is refused: exit 1, the message names the model
    and the worst row, nothing is registered and no dbt model is written."""
    from mlsm_py.compile.assemblers import sklearn_trees

    root = demo_project(tmp_path)
    scores_dir = root / "dbt_project" / "models" / "scores"
    before = {f.name: f.read_bytes() for f in scores_dir.iterdir()}
    # Naive double comparison instead of scikit-learn's float32 one: routes threshold
    # neighbours the wrong way, which the gate must catch.
    monkeypatch.setattr(sklearn_trees, "float32_split", lambda t: (t, True))
    code = cli.main(["demo", "--rows", "3000", "--project", str(root)])
    err = capsys.readouterr().err
    assert code == 1
    assert "parity failed for model 'lead_forest'" in err and "worst row" in err
    assert "Traceback" not in err
    assert (
        query(root / "warehouse" / "mlsm.duckdb", "select count(*) from mlsm_registry.fits")[0][0]
        == 0
    )
    after = {f.name: f.read_bytes() for f in scores_dir.iterdir()}
    assert not any(n.startswith("score__") for n in after)  # only what the registry holds
    assert set(after) <= set(before)


def test_an_open_reader_is_named_before_anything_runs(demo):
    """DuckDB admits one writer: a notebook holding the file open makes `mlsm build` stop at
    once with one line, before dbt runs, and the published rows stay as they were."""
    import subprocess
    import sys

    root, _ = demo
    wh = root / "warehouse" / "mlsm.duckdb"
    before = run_counts(wh)
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print('open', flush=True); time.sleep(120)"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code, str(wh)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "open"
        out = mlsm("build", cwd=root)
    finally:
        reader.kill()
        reader.wait()
    assert out.returncode == 1
    assert f"is open by process {reader.pid}" in out.stderr and "nothing was run" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert run_counts(wh) == before


def test_a_mistyped_warehouse_is_not_created(demo, tmp_path):
    root, _ = demo
    typo = tmp_path / "wharehouse" / "mlsm.duckdb"
    for verb in (("build",), ("retrain",), ("status",), ("promote", "lead_lgbm")):
        out = mlsm(*verb, "--warehouse", str(typo), cwd=root)
        assert out.returncode == 1 and f"warehouse {typo} does not exist" in out.stderr, verb
    assert not typo.exists() and not typo.parent.exists()


def test_readers_file_never_blocks_a_build(demo):
    """A dashboard reads warehouse/mlsm.published.duckdb: holding it open does not block
    `mlsm build`; the open connection keeps the run it opened, a new one sees the new run."""
    import duckdb

    from mlsm_py.flow.readers import readers_file

    root, _ = demo
    wh = root / "warehouse" / "mlsm.duckdb"
    path = readers_file(wh)
    reader = duckdb.connect(str(path), read_only=True)
    try:
        (old_run,) = reader.execute("select distinct run_id from published.winners").fetchone()
        out = mlsm("build", cwd=root)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "readers: " in out.stdout
        assert reader.execute("select distinct run_id from published.winners").fetchall() == [
            (old_run,)
        ]
    finally:
        reader.close()
    fresh = duckdb.connect(str(path), read_only=True)
    try:
        (new_run,) = fresh.execute("select distinct run_id from published.winners").fetchone()
        (status,) = fresh.execute(
            "select status from mlsm_registry.builds where run_id = ?", [new_run]
        ).fetchone()
        winners = fresh.execute("select count(*) from published.winners").fetchone()[0]
        scores = fresh.execute("select * from published.scores order by all").fetchall()
    finally:
        fresh.close()
    assert new_run != old_run and status == "published" and winners > 0
    assert query(wh, "select distinct run_id from published.winners") == [(new_run,)]
    # The copy's scores are the warehouse's, row for row (merged, not copied: issue 15).
    assert scores == query(wh, "select * from published.scores order by all")


def test_plain_dbt_build_from_the_dbt_project(demo):
    """An analytics engineer runs dbt itself, from dbt_project/, with the committed profile:
    it finds the demo warehouse and passes every check (publication stays with mlsm build)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root, _ = demo
    env = {k: v for k, v in os.environ.items() if k != "MLSM_WAREHOUSE"}
    dbt = Path(sys.executable).with_name("dbt")
    out = subprocess.run(
        [str(dbt), "build"],
        cwd=root / "dbt_project",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert (
        "ERROR=0" in out.stdout.replace(" ", "")
        and not (root / "dbt_project" / "warehouse").exists()
    )

"""The monitoring views over the history: realised performance per cohort equals
scikit-learn on the joined rows once outcomes arrive from a known process; the check history
keeps failed builds too; champion and challenger are compared on the same records."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlsm_py.demo.data import generate_leads
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_train
from tests.helpers import build_project, query, session
from tests.lifecycle_defs import make

pytestmark = pytest.mark.dbt


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """Three builds: a champion, then a challenger beside it, then outcomes for the open leads."""
    s = session(tmp_path_factory.mktemp("monitoring"), make("weak"))
    build_project(s, generate_leads(4000, seed=81))
    wh = s.project.warehouse
    # A challenger: both are scored from now on (the champion's rows do not change).
    import os

    os.environ["LIFECYCLE_VARIANT"] = "better"
    try:
        s.project._definitions = make("better")
        run_train(s, ["lead_a"])
        run_build(s)
    finally:
        os.environ.pop("LIFECYCLE_VARIANT", None)
    # Outcomes from a known process: many visits convert.
    con = duckdb.connect(str(wh))
    con.execute(
        "update raw.leads set converted = case when visits >= 6 then 1 else 0 end "
        "where converted is null"
    )
    con.close()
    run_build(s)
    return s


def test_realised_performance_equals_sklearn(monitored):
    s = monitored
    wh = s.project.warehouse
    perf = query(
        wh,
        "select model_name, role, fit_id, records, positives, roc_auc, capture_at_10 "
        "from monitoring.realised_performance",
    )
    assert perf and {r[1] for r in perf} >= {"champion"}
    for model, role, fit_id, records, positives, auc, capture in perf:
        rows = query(
            wh,
            "with firsts as (select *, row_number() over (partition by lead_id, model_name, "
            "role order by published_at) as nth from history.scores) "
            "select f.lead_id, f.score, o.converted from firsts f join lead_features o "
            "using (lead_id) where f.nth = 1 and f.model_name = ? and f.role = ? "
            "and f.fit_id = ? and o.converted is not null order by f.lead_id",
            [model, role, fit_id],
        )
        y = np.array([r[2] for r in rows], dtype=float)
        score = np.array([r[1] for r in rows])
        assert records == len(rows) and positives == y.sum()
        assert auc == pytest.approx(roc_auc_score(y, score), abs=1e-9)
        order = np.lexsort((np.array([r[0] for r in rows]), -score))
        top = int(np.ceil(0.1 * len(y)))
        assert capture == pytest.approx(y[order[:top]].sum() / y.sum(), abs=1e-9)
    # The challenger was scored on the same open records as the champion.
    both = query(
        wh,
        "select role, records from monitoring.champion_vs_challenger where model_name = 'lead_a'",
    )
    assert {r[0] for r in both} == {"champion", "challenger"}
    assert len({r[1] for r in both}) == 1
    # The check history: one row per build per input, with the build's status.
    builds = query(wh, "select count(distinct run_id) from monitoring.input_drift_history")[0][0]
    assert builds == 3


def test_report_renders_in_chromium(monitored, tmp_path):
    """The report opens in headless Chromium with no console message, every plot drawn."""
    import shutil
    import subprocess

    from PIL import Image

    from mlsm_py.report import html
    from tests.conftest import in_ci

    browser = shutil.which("chromium")
    if browser is None:
        if in_ci():
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    out = html.write(monitored, tmp_path / "report.html")
    text = out.read_text()
    assert "<script" not in text and "http" not in text.split("<svg", 1)[0]  # self-contained
    n_plots = text.count('<div class="plot">')
    assert n_plots >= 7  # per model: ROC, capture, calibration, scores, drift; versus
    for name in (
        "ROC curve",
        "Capture",
        "Calibration",
        "Scores per build",
        "Input drift (PSI) per build",
        "Champion vs challenger",
    ):
        assert name in text, name
    png = tmp_path / "report.png"
    args = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,4000",
    ]
    dom = subprocess.run(
        [*args, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120
    )
    shot = subprocess.run(
        [*args, f"--screenshot={png}", out.as_uri()], capture_output=True, text=True, timeout=120
    )
    for run in (dom, shot):
        assert run.returncode == 0, run.stderr[-2000:]
        console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
        assert not console, console
    # Every plot is in the rendered DOM with its drawing, and the page is not blank.
    rendered = dom.stdout
    assert rendered.count('<div class="plot"><svg') == n_plots
    assert rendered.count("<path") > 20 * n_plots
    image = Image.open(png).convert("L")
    histogram = image.histogram()
    assert sum(histogram[:200]) > 0.02 * image.width * image.height  # ink, not white

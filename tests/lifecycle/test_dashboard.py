"""`mlsm dashboard` as a user meets it: a real server on a loopback port over a demo warehouse,
the page rendered by headless Chromium (Streamlit draws over a websocket, so the page is driven
through the DevTools protocol until it has drawn), and `mlsm build` passing while it is up:
the page reads the readers' copy only and holds no lock on the warehouse."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsm_py.flow.readers import readers_file
from tests.conftest import in_ci
from tests.helpers import demo_project, mlsm, query

pytestmark = pytest.mark.dbt

# Streamlit imports pandas, pyarrow and altair before it listens; on 2 busy cores, slowly.
START_SECONDS = 120
RENDER_SECONDS = 90
WIDTH, HEIGHT = 1400, 4200


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = demo_project(tmp_path_factory.mktemp("dashboard"))
    out = mlsm("demo", "--rows", "3000", cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    return root


# The run the copy is of, from its publication log (a score row keeps the run that scored
# it, so published.scores can hold several).
LAST_PUBLISHED = (
    "select run_id from mlsm_registry.builds where status = 'published' "
    "order by finished_at desc limit 1"
)


def _browser() -> str:
    found = shutil.which("chromium")
    if found is None:
        if in_ci():
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Page:
    """A headless Chromium tab over the DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == n:
                assert "error" not in msg, msg
                return msg["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def render(self, url: str, ready: str) -> str:
        """Load `url`, wait until the `ready` expression holds and Streamlit has stopped
        running the script, and return the page's HTML."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + RENDER_SECONDS
        while not self.js(f"({ready}) && !document.querySelector('[data-testid=stStatusWidget]')"):
            assert time.monotonic() < deadline, "the page did not finish rendering"
            time.sleep(0.5)
        time.sleep(1.5)  # the charts' last frame after their data arrived
        return self.js("document.documentElement.outerHTML")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
        return path


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    from websockets.sync.client import connect  # installed with streamlit

    proc = subprocess.Popen(
        [
            _browser(),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Port 0: Chromium picks a free port and writes it here.
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            assert time.monotonic() < deadline and proc.poll() is None, "no DevTools port"
            time.sleep(0.2)
        port = port_file.read_text().splitlines()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as r:
            tab = next(t for t in json.load(r) if t["type"] == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=None) as ws:
            page = Page(ws)
            page.call("Page.enable")
            # A tall viewport, so one screenshot holds the whole page at desktop width.
            page.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH,
                height=HEIGHT,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield page
    finally:
        proc.kill()
        proc.wait()


def _start(root: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLSM_WAREHOUSE"}
    return subprocess.Popen(
        [sys.executable, "-m", "mlsm_py.cli", "dashboard", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: the test stops it and its streamlit child
    )


# A chart has drawn once Vega-Lite put a canvas (or svg) of non-zero size into it.
CHARTS_DRAWN = (
    "[...document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
    "[data-testid=stVegaLiteChart] svg')].filter(e => e.getBoundingClientRect().width > 0)"
    ".length"
)


def test_dashboard_renders_and_never_blocks_a_build(demo, tmp_path):
    from PIL import Image

    _browser()  # skip (or, in CI, fail) before starting anything
    root = demo
    readers = readers_file(root / "warehouse" / "mlsm.duckdb")
    # The first leads of the call list, as the readers' copy holds them.
    first = [
        r[0]
        for r in query(
            readers, "select lead_id from published.call_list order by call_rank limit 5"
        )
    ]
    assert len(first) == 5
    (old_run,) = query(readers, LAST_PUBLISHED)[0]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    server = _start(root, port)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(url):
            assert server.poll() is None, server.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "mlsm dashboard did not answer"
            time.sleep(0.5)
        with chromium(tmp_path / "chromium") as page:
            ready = f"document.body.innerText.includes('{old_run}') && {CHARTS_DRAWN} >= 3"
            html = page.render(url, ready)
            png = page.screenshot(tmp_path / "dashboard.png")
            assert 'data-testid="stException"' not in html, page.js("document.body.innerText")
            assert "Today's top leads" in html and "Models: champions and challengers" in html
            # The grid's accessible cells hold the values of the rows on screen: the first.
            shown = page.js(
                "[...document.querySelector('[data-testid=stDataFrame]')"
                ".querySelectorAll('td')].map(td => td.innerText)"
            )
            assert all(str(k) in shown for k in first), (first, shown[:40])
            image = Image.open(png).convert("RGB")
            colours = image.getcolors(maxcolors=image.width * image.height)
            assert len(colours) > 1
            assert max(n for n, _ in colours) < 0.95 * image.width * image.height  # not blank

            # The page is up, and a build publishes: nothing holds the warehouse.
            out = mlsm("build", cwd=root)
            assert out.returncode == 0, out.stderr[-2000:]
            (new_run,) = query(readers, LAST_PUBLISHED)[0]
            assert new_run != old_run
            # The next render reads the copy the build wrote.
            html = page.render(url, f"document.body.innerText.includes('{new_run}')")
            assert 'data-testid="stException"' not in html
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        stdout, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr[-2000:]
    assert f"dashboard: {url}" in stdout and "dashboard stopped" in stdout
    assert "Traceback" not in stderr
    log = (root / "logs" / "dashboard.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_the_demo_declares_the_dashboard_to_dbt(demo):
    """dbt parsed the exposure: lineage shows the page reading the published models."""
    manifest = json.loads((demo / "dbt_project" / "target" / "manifest.json").read_text())
    (exposure,) = [e for e in manifest["exposures"].values() if e["name"] == "mlsm_dashboard"]
    assert exposure["type"] == "dashboard"
    nodes = {n.rsplit(".", 1)[-1] for n in exposure["depends_on"]["nodes"]}
    assert {"scores", "winners", "call_list", "realised_performance", "decisions"} <= nodes


def test_readers_copy_holds_what_the_page_reads(demo):
    readers = readers_file(demo / "warehouse" / "mlsm.duckdb")
    have = {
        f"{s}.{t}" for s, t in query(readers, "select schema_name, table_name from duckdb_tables()")
    }
    assert {
        "published.call_list",
        "mlsm_registry.aliases",
        "mlsm_registry.decisions",
        "mlsm_registry.fit_metrics",
        "monitoring.realised_performance",
        "monitoring.input_drift_history",
        "monitoring.score_distribution",
    } <= have
    fits = {r[0] for r in query(readers, "describe mlsm_registry.fits")}
    assert "fit_id" in fits and not {"dbt_sql", "scoring_sql"} & fits  # the SQL stays behind


def test_without_streamlit_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    from mlsm_py import cli

    root = demo_project(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name)
    )
    assert cli.main(["dashboard", "--project", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'mlsm[dashboard]'" in err, err


def test_reason_codes_are_shown_when_published_and_never_required(tmp_path):
    """Reason columns appear in the leads table in number order when a published table has
    them (the call list first), and their absence changes nothing else."""
    import duckdb

    from mlsm_py.dashboard import data

    path = tmp_path / "mlsm.published.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema published")
    con.execute(
        "create table published.winners as select * from (values "
        "(1, 'lead_winner', 'm', 1, 'f1', 0.9, 99.0, 10, null, 'r'), "
        "(2, 'lead_winner', 'm', 1, 'f1', 0.2, 20.0, 2, null, 'r')) as t(lead_id, "
        "summary_model, winning_model, winning_version, winning_fit_id, score, percentile, "
        "decile, arm, run_id)"
    )
    con.execute(
        "create table published.call_list as select lead_id, row_number() over "
        "(order by percentile desc) as call_rank, 'x' as reason_2, 'visits' as reason_1, "
        "0.4 as reason_1_contribution, 'many visits' as reason_1_text, 'nl' as country "
        "from published.winners"
    )
    con.close()
    with data.reading(path) as con:
        with_reasons = data.top_leads(con, "lead_id", "call_list", data.Filters())
        without = data.top_leads(con, "lead_id", None, data.Filters())
    assert list(with_reasons["lead_id"]) == [1, 2] == list(without["lead_id"])
    cols = list(with_reasons.columns)
    assert cols[cols.index("reason_1") :][:4] == [
        "reason_1",
        "reason_1_contribution",
        "reason_1_text",
        "reason_2",
    ]
    assert "country" in cols and not any(c.startswith("reason") for c in without.columns)
    # No segment column in this copy (no scores): the segment filter is ignored, not an error.
    with data.reading(path) as con:
        assert len(data.top_leads(con, "lead_id", "call_list", data.Filters(segment="de"))) == 2

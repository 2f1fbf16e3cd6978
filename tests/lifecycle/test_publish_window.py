"""Kills aimed at the publication window: a build is held inside its publication transaction
(after the published tables were replaced, before the commit) and SIGKILLed there. The
published tables must all be the old run's, with no new build row and no leftovers; the next
build publishes them all together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mlsm_py.demo.data import generate_leads
from tests.helpers import load, mlsm, query
from tests.lifecycle.test_kill import _env, _project

pytestmark = pytest.mark.dbt

# Runs `mlsm build` in its own process with the last step of the publication transaction
# (the build-log row, written after every published table was replaced) slowed down, and says
# when it is there, so the test can kill it exactly inside the window.
HELD_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlsm_py.flow import build
    from mlsm_py.flow.session import Session
    from mlsm_py.project import Project
    from mlsm_py.registry import store
    from tests.lifecycle_defs import make

    root, warehouse, marker = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    real = store.record_build

    def held(con, row):
        real(con, row)
        if row["status"] == "published":
            marker.write_text(row["run_id"])
            time.sleep(120)

    store.record_build = held
    p = Project(root, "tests:defs", root / "dbt_project", warehouse, _definitions=make("weak"))
    # The same project the test set up with `mlsm train` (lifecycle_defs, variant "weak").
    build.run_build(Session(p, say=lambda _: None, actor="tester"))
    """
)


def _published(wh):
    return {
        t: query(wh, f"select distinct run_id from published.{t} order by 1")
        for t in ("scores", "winners")
    }


def test_kills_inside_the_publication_leave_the_old_set(tmp_path):
    # Every step in its own process: this one never holds the warehouse open.
    root = _project(tmp_path)
    wh = root / "warehouse" / "mlsm.duckdb"
    load(wh, generate_leads(3000, seed=51))
    for verb in ("train", "build"):
        out = mlsm(verb, cwd=root, env=_env("weak"))
        assert out.returncode == 0, out.stderr[-2000:]
    for attempt in range(3):
        before = _published(wh)
        runs_before = query(wh, "select run_id from mlsm_registry.builds order by all")
        marker = tmp_path / f"in_window_{attempt}"
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen(
            [sys.executable, "-c", HELD_BUILD, str(root), str(wh), str(marker)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 300
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=30)[1][-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        new_run = marker.read_text()
        assert _published(wh) == before  # every published table from the old run
        assert query(wh, "select run_id from mlsm_registry.builds order by all") == runs_before
        assert new_run not in {r for rows in before.values() for (r,) in rows}
        leftovers = query(
            wh,
            "select table_name from duckdb_tables() where table_name like '%backup%' "
            "or table_name like '%tmp%'",
        )
        assert leftovers == []
    # Afterwards a build publishes: winners from the new run; the scores, which no change
    # touched, keep the run that scored them (incremental scoring).
    last = _published(wh)
    out = mlsm("build", cwd=root, env=_env("weak"))
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = query(
        wh,
        "select run_id from mlsm_registry.builds where status = 'published' "
        "order by finished_at desc limit 1",
    )[0]
    assert _published(wh) == {"scores": last["scores"], "winners": [(run,)]}

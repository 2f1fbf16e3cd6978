"""`mlsm retrain` as a scheduler runs it, in its own process: killed with SIGKILL at random
moments it leaves the old state or the new one (exactly one champion, and the published rows
are the champion's), a concurrent run is refused, and re-running after a failure works."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlsm_py.demo.data import generate_leads
from tests.helpers import ROOT, copy_project, load, mlsm, one_champion_each, query

pytestmark = pytest.mark.dbt
ROWS = 3000
KILLS = 4


def _project(tmp: Path) -> Path:
    copy_project(tmp)
    shutil.copy(ROOT / "tests" / "lifecycle_defs.py", tmp / "lifecycle_defs.py")
    (tmp / "pyproject.toml").write_text(
        '[tool.mlsm]\ndefinitions = "lifecycle_defs:PROJECT"\ndbt_project = "dbt_project"\n'
    )
    return tmp


def _env(variant: str) -> dict:
    return {"LIFECYCLE_VARIANT": variant, "MLSM_ACTOR": "scheduler"}


def _state(wh: Path) -> dict:
    champion = dict(
        query(wh, "select model_name, fit_id from mlsm_registry.aliases where alias = 'champion'")
    )
    published = dict(
        query(
            wh, "select distinct model_name, fit_id from published.scores where role = 'champion'"
        )
    )
    promoted = query(
        wh,
        "select count(*) from mlsm_registry.decisions where model_name = 'lead_a' "
        "and action = 'retrain' and outcome = 'promoted'",
    )[0][0]
    return {
        "champion": champion,
        "published": published,
        "promoted": promoted,
        "ones": one_champion_each(wh),
    }


def _start(root: Path, variant: str) -> subprocess.Popen:
    env = {**os.environ, **_env(variant)}
    env.pop("MLSM_WAREHOUSE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "mlsm_py.cli", "retrain"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = _project(tmp_path_factory.mktemp("kill"))
    load(root / "warehouse" / "mlsm.duckdb", generate_leads(ROWS, seed=31))
    for verb in ("train", "build"):
        out = mlsm(verb, cwd=root, env=_env("weak"))
        assert out.returncode == 0, out.stderr[-2000:]
    return root


def test_sigkill_at_random_points_leaves_old_or_new_state(project):
    root = project
    wh = root / "warehouse" / "mlsm.duckdb"
    weak = _state(wh)
    assert weak["champion"] == weak["published"] and weak["ones"] == {"lead_a": 1, "lead_d": 1}

    # One run to the end: how long a retrain takes here, and what the new state is.
    t0 = time.perf_counter()
    out = mlsm("retrain", cwd=root, env=_env("better"))
    full = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-2000:]
    new = _state(wh)
    assert new["champion"]["lead_a"] != weak["champion"]["lead_a"]
    assert new["champion"] == new["published"]
    better = new["champion"]["lead_a"]

    rng = random.Random(7)
    seen = []
    for _ in range(KILLS):
        # Back to the weak champion (if the last kill came after publication).
        if _state(wh)["champion"]["lead_a"] != weak["champion"]["lead_a"]:
            for verb in (("rollback", "lead_a"), ("build",)):
                out = mlsm(*verb, cwd=root, env=_env("weak"))
                assert out.returncode == 0, out.stderr[-2000:]
        before = _state(wh)
        proc = _start(root, "better")
        delay = rng.uniform(0.5, full * 1.05)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        after = _state(wh)
        assert after["ones"] == {"lead_a": 1, "lead_d": 1}, (delay, after)
        # Old state or new, never a mix: the published rows are the champion's.
        assert after["champion"] == after["published"], (delay, after)
        assert after["champion"]["lead_a"] in (weak["champion"]["lead_a"], better)
        promoted_now = after["champion"]["lead_a"] == better
        assert after["promoted"] == before["promoted"] + int(promoted_now), (delay, after)
        seen.append((round(delay, 1), "new" if promoted_now else "old"))
    # Re-running after the kills works, whatever state they left.
    out = mlsm("retrain", cwd=root, env=_env("better"))
    assert out.returncode == 0, out.stderr[-2000:]
    final = _state(wh)
    assert final["champion"] == final["published"] and final["ones"] == {"lead_a": 1, "lead_d": 1}
    assert query(wh, "select count(*) from mlsm_registry.pending")[0][0] == 0
    print("kills (delay s, state):", seen, f"full run {full:.1f} s")


def test_a_concurrent_run_is_refused(project):
    root = project
    wh = root / "warehouse" / "mlsm.duckdb"
    lock = wh.with_name(wh.name + ".mlsm-lock")
    proc = _start(root, "weak")
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            text = lock.read_text() if lock.exists() else ""
            if text and json.loads(text).get("pid") == proc.pid:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the retrain never took the lock")
        for verb in (("build",), ("retrain",), ("promote", "lead_a")):
            other = mlsm(*verb, cwd=root, env=_env("weak"))
            assert other.returncode == 1, other.stdout
            assert "another mlsm run holds" in other.stderr and "`mlsm retrain`" in other.stderr
            assert "Traceback" not in other.stderr
    finally:
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    state = _state(wh)
    assert state["ones"] == {"lead_a": 1, "lead_d": 1} and state["champion"] == state["published"]

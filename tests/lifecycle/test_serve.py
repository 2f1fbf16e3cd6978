"""`mlsm serve` as a user runs it: a real uvicorn server on loopback over a demo warehouse,
driven by a real HTTP client. Its answers equal the published rows of the same leads; bad
records get a 422 naming the field; a promotion shows without a restart and never mixes two
champions in one response; `mlsm build` works while it runs."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.helpers import demo_project, mlsm

pytestmark = pytest.mark.dbt
TOL = 1e-9
FIELDS = [
    "country",
    "source_channel",
    "company_size",
    "industry",
    "annual_revenue_k",
    "visits",
    "pages_viewed",
    "quotes_requested",
    "email_opens",
    "session_minutes",
    "days_since_last_visit",
    "pages_per_visit",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(root: Path, *extra: str) -> tuple[subprocess.Popen, httpx.Client]:
    """`mlsm serve` as a new process on a free loopback port, once it answers /health."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlsm_py.cli", "serve", "--port", str(port), *extra],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.time() + 120
    while True:
        try:
            if client.get("/health").status_code == 200:
                return proc, client
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlsm serve {' '.join(extra)} did not start: {proc.stdout.read()}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen, client: httpx.Client) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    client.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = demo_project(tmp_path_factory.mktemp("serve"))
    out = mlsm("demo", "--rows", "3000", cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    proc, client = _start(root)
    yield root, client, proc
    _stop(proc, client)


def _published(root: Path, sql: str) -> list[dict]:
    con = duckdb.connect(str(root / "warehouse" / "mlsm.published.duckdb"), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def _features(root: Path, keys: list) -> list[dict]:
    """The leads' feature rows, read the way a CRM would send them: JSON values, null for
    missing. A short read-only open: the server holds nothing, so this does not collide."""
    con = duckdb.connect(str(root / "warehouse" / "mlsm.duckdb"), read_only=True)
    try:
        cols = ", ".join(f'"{c}"' for c in ["lead_id", *FIELDS])
        cur = con.execute(
            f"select {cols} from main.lead_features where lead_id in "
            f"(select unnest(?::bigint[])) order by lead_id",
            [keys],
        )
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    return [json.loads(json.dumps(r, default=float)) for r in rows]


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0, abs_tol=TOL)


def test_api_answers_equal_the_published_rows(served):
    root, client, _ = served
    pub = _published(
        root,
        "select lead_id, model_name, fit_id, segment, fallback, score, percentile, decile, "
        + ", ".join(f"reason_{i}, reason_{i}_contribution" for i in range(1, 5))
        + " from published.scores where role = 'champion' and model_status = 'live' "
        "order by lead_id",
    )
    keys = sorted({r["lead_id"] for r in pub})[:300]
    records = _features(root, keys)
    assert any(r["annual_revenue_k"] is None for r in records), "want NULL inputs in the sample"
    got = {}
    for i in range(0, len(records), 100):
        resp = client.post("/score", json={"records": records[i : i + 100]})
        assert resp.status_code == 200, resp.text
        for res in resp.json()["results"]:
            for s in res["scores"]:
                got[(res["key"], s["model"])] = s
            for w in res["winners"]:
                got[(res["key"], "winner:" + w["summary"])] = w
    want = [r for r in pub if r["lead_id"] in set(keys)]
    assert len(want) >= 3 * len(keys)
    for r in want:
        s = got[(r["lead_id"], r["model_name"])]
        assert s["fit_id"] == r["fit_id"], r
        assert (s["segment"], s["fallback"]) == (r["segment"], r["fallback"]), r
        assert _close(s["score"], r["score"]), (r, s)
        assert _close(s["percentile"], r["percentile"]), (r, s)
        assert s["decile"] == r["decile"], (r, s)
        # Reason codes: the same inputs and contributions as the scoring SQL published.
        for i, why in enumerate(s["reasons"], 1):
            assert why["input"] == r[f"reason_{i}"], (r, s)
            assert _close(why["contribution"], r[f"reason_{i}_contribution"]), (r, s)
            assert why["text"]  # from the project's reason_texts seed
    assert all(len(got[(r["lead_id"], r["model_name"])]["reasons"]) == 4 for r in want)
    winners = _published(
        root,
        "select lead_id, summary_model, winning_model, winning_fit_id, score, decile "
        "from published.winners",
    )
    checked = 0
    for w in winners:
        if w["lead_id"] not in set(keys):
            continue
        a = got[(w["lead_id"], "winner:" + w["summary_model"])]
        assert (a["model"], a["fit_id"], a["decile"]) == (
            w["winning_model"],
            w["winning_fit_id"],
            w["decile"],
        ), (w, a)
        assert _close(a["score"], w["score"]), (w, a)
        checked += 1
    assert checked >= len(keys)
    # The call list shows the winner's reasons in words, from the seed; so does the API.
    calls = _published(
        root,
        "select lead_id, reason_1, reason_1_text, reason_2_text from published.call_list",
    )
    texts = 0
    for c in calls:
        if c["lead_id"] in set(keys):
            (a,) = [w for w in got_winners(got, c["lead_id"])]
            assert a["reasons"][0]["input"] == c["reason_1"]
            assert a["reasons"][0]["text"] == c["reason_1_text"]
            assert a["reasons"][1]["text"] == c["reason_2_text"]
            texts += c["reason_1_text"] != c["reason_1"]  # a seed text, not the bare name
    assert texts > 0


def got_winners(got: dict, key) -> list[dict]:
    return [v for (k, what), v in got.items() if k == key and what.startswith("winner:")]


def _record(root: Path) -> dict:
    pub = _published(root, "select min(lead_id) as k from published.scores")
    return _features(root, [pub[0]["k"]])[0]


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("visits", "many", "visits is a number"),  # wrong type
        ("visits", -3, "visits must be a number >= 0"),  # out of range
        ("days_since_last_visit", 2.5, "must be an integer"),
        ("country", "atlantis", "country must be one of"),  # unknown level, declared strict
        ("country", 7, "country is a category"),
        ("visits", None, "visits must not be NULL"),
    ],
)
def test_bad_records_get_422_naming_field_value_and_rule(served, field, value, rule):
    root, client, _ = served
    good = _record(root)
    resp = client.post("/score", json={"records": [good, {**good, field: value}]})
    assert resp.status_code == 422, resp.text
    (problem,) = resp.json()["detail"]
    assert (problem["record"], problem["field"], problem["value"]) == (1, field, value)
    assert rule in problem["rule"]
    assert field in problem["msg"] and rule in problem["msg"]


def test_missing_required_field_unknown_model_and_nulls(served):
    root, client, _ = served
    good = _record(root)
    required = {k: v for k, v in good.items() if k != "pages_viewed"}
    resp = client.post("/score", json={"records": [required]})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "pages_viewed"
    assert "required" in resp.json()["detail"][0]["rule"]
    resp = client.post("/score", json={"records": [good], "models": ["no_such_model"]})
    assert resp.status_code == 404 and "no_such_model" in resp.text
    assert client.get("/models/no_such_model").status_code == 404
    # A nullable field left out is a missing value, exactly as JSON null.
    absent = {k: v for k, v in good.items() if k != "session_minutes"}
    a = client.post("/score", json={"records": [absent]}).json()["results"][0]
    b = client.post("/score", json={"records": [{**good, "session_minutes": None}]}).json()
    assert a["scores"] == b["results"][0]["scores"]
    docs = client.get("/openapi.json").json()
    assert "/score" in docs["paths"] and "/models" in docs["paths"]


def test_promotion_shows_without_restart_and_never_mixes(served):
    """Requests keep coming while the champion moves (promote to an older fit, then roll
    back): each response has one fit for the model across all its records, and the server
    follows each move without a restart. The retrain's dbt build and publication run while
    the server is up: it holds no lock."""
    root, client, _ = served
    model = "lead_logreg"
    records = [_record(root)] * 20
    before = client.get(f"/models/{model}").json()["champions"][0]["fit_id"]
    seen, problems, stop = set(), [], threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
            while not stop.is_set():
                body = c.post("/score", json={"records": records, "models": [model]}).json()
                fits = {s["fit_id"] for res in body["results"] for s in res["scores"]}
                if len(fits) != 1:
                    problems.append(fits)
                seen.update(fits)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # New matured labels since the demo's first build: a second fit, the challenger (or,
        # if it wins, the new champion, published by the same run).
        out = mlsm("retrain", model, cwd=root)
        assert out.returncode == 0, out.stdout + out.stderr
        status = {r["model"]: r for r in json.loads(mlsm("status", "--json", cwd=root).stdout)}
        now = status[model]["champion"]
        if now == before:
            (challenger,) = status[model]["challengers"]
            assert challenger != before, status[model]
            out = mlsm("promote", model, cwd=root)
            assert out.returncode == 0, out.stdout + out.stderr
        else:
            challenger = now
        _wait_for(client, model, challenger)
        out = mlsm("rollback", model, cwd=root)
        assert out.returncode == 0, out.stdout + out.stderr
        _wait_for(client, model, before)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not problems, problems
    assert {before, challenger} <= seen


def test_two_workers_answer_like_one(served):
    """--workers 2: two processes on one port, each with its own copy of the champions."""
    root, client, _ = served
    body = {"records": [_record(root)]}
    proc, other = _start(root, "--workers", "2")
    try:
        answers = [other.post("/score", json=body) for _ in range(8)]
    finally:
        _stop(proc, other)
    want = client.post("/score", json=body).json()["results"]
    assert all(a.status_code == 200 and a.json()["results"] == want for a in answers)


def _wait_for(client: httpx.Client, model: str, fit_id: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if client.get(f"/models/{model}").json()["champions"][0]["fit_id"] == fit_id:
            return
        time.sleep(0.1)
    pytest.fail(f"the server did not pick up {model} -> {fit_id}")

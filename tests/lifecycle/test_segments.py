"""Fan-out: one definition, a fit per country. Each segment fit is registered, gated and
decided on its own; the build routes every record to its segment's fit, and the global fit
(the fallback) scores small segments, levels first seen at scoring time and NULLs, saying so
in the published rows. One project serves the whole lifecycle (train, build, retrain with a
failing segment, one-segment promote and rollback) to keep the dbt runs few."""

from __future__ import annotations

import dataclasses

import duckdb
import pyarrow as pa
import pytest

from mlsm_py import segments
from mlsm_py.demo.data import generate_leads
from mlsm_py.flow.aliases import promote, promote_proposed, rollback
from mlsm_py.flow.build import run_build
from mlsm_py.flow.lifecycle import run_retrain, run_train
from mlsm_py.spec import Definitions, Promotion, SummaryModel
from mlsm_py.train.split import bounds
from tests.helpers import load, query, routed_library, session
from tests.lifecycle_defs import estimator, make

pytestmark = pytest.mark.dbt
MIN_ROWS = 900  # with 24,000 leads: 'se' (4%) and 'pl' (5%) fall below it in training
TOL = 1e-9


def _defs(variant: str) -> Definitions:
    base = make(variant)
    seg = dataclasses.replace(
        base.models[0],
        estimator=estimator(variant),
        segment_by="country",
        segment_min_rows=MIN_ROWS,
        segment_min_positives=5,
    )
    other = base.models[1]  # an unsegmented draft beside it: winners span both
    return Definitions([seg, other], [SummaryModel("lead_winner", ("lead_a", "lead_d"))])


def _leads(n: int = 24_000, seed: int = 17) -> pa.Table:
    return generate_leads(n, seed=seed)


def _published(wh) -> dict:
    rows = query(
        wh,
        "select lead_id, fit_id, segment, fallback, score, percentile from published.scores "
        "where model_name = 'lead_a' and role = 'champion' order by lead_id",
    )
    return {r[0]: r[1:] for r in rows}


def _routed_library(s, wh) -> tuple[dict, dict]:
    return routed_library(s, "lead_a")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments")
    s = session(tmp, _defs("weak"))
    load(s.project.warehouse, _leads())
    run_train(s)
    first = run_build(s)
    return s, tmp, first


def test_each_segment_fit_is_registered_gated_and_champion(project):
    s, _, _ = project
    wh = s.project.warehouse
    m = s.defs.model("lead_a")
    con = duckdb.connect(str(wh))
    try:
        feats = con.execute("select * from lead_features").df()
        as_of = feats["created_at"].max()
    finally:
        con.close()
    b = bounds(as_of, m.split)
    matured_train = feats[(feats["created_at"] < b.train_before)]
    counts = segments.labels(matured_train, m).value_counts()
    expected_fits = sorted(k for k, n in counts.items() if n >= MIN_ROWS)
    expected_fallback = sorted(k for k, n in counts.items() if n < MIN_ROWS)
    assert expected_fallback and len(expected_fits) >= 5  # the data gives both kinds
    fits = query(
        wh,
        "select f.segment, f.parity_passed, f.parity_rows_checked, f.train_rows, a.alias, "
        "d.action, d.segment from mlsm_registry.fits f "
        "join mlsm_registry.aliases a using (fit_id) "
        "join mlsm_registry.decisions d on d.decision_id = a.decision_id "
        "where f.model_name = 'lead_a' order by f.segment nulls first",
    )
    assert [r[0] for r in fits] == [None, *expected_fits]
    for seg, passed, checked, train_rows, alias, action, d_seg in fits:
        assert passed and checked > 0 and alias == "champion" and action == "first_fit"
        assert d_seg == seg  # each segment's own promotion decision
        if seg is not None:
            assert train_rows == counts[seg]
    # One champion per (model, segment), and per-segment samples kept.
    per = query(
        wh,
        "select segment, count(*) from mlsm_registry.aliases where model_name = 'lead_a' "
        "and alias = 'champion' group by segment",
    )
    assert all(n == 1 for _, n in per) and len(per) == len(expected_fits) + 1
    # The global fit's score-drift reference is the holdout rows it scores: the fallback's.
    hold = feats[(feats["created_at"] >= b.holdout_from) & (feats["created_at"] <= b.matured_until)]
    level = segments.labels(hold, m)
    fallback_rows = int((~level.isin(expected_fits) | level.isna()).sum())
    ref = query(
        wh,
        "select sum(b.rows) from mlsm_registry.fit_bins b join mlsm_registry.fits f "
        "using (fit_id) where f.model_name = 'lead_a' and f.segment is null "
        "and b.table_name = 'score_deciles'",
    )
    assert ref[0][0] == fallback_rows < len(hold)
    marks = query(
        wh,
        "select count(distinct s.segment) from mlsm_registry.fit_samples s "
        "join mlsm_registry.fits f using (fit_id) where f.model_name = 'lead_a'",
    )
    assert marks[0][0] == len(expected_fits)


def test_published_scores_follow_each_records_segment_fit(project):
    """Per-segment parity of the build: every open lead's published score equals its routed
    fit's library score; small segments and NULLs are marked fallback."""
    s, _, _ = project
    wh = s.project.warehouse
    got = _published(wh)
    lib, fit_of = _routed_library(s, wh)
    assert set(got) == set(lib) and len(got) > 500
    diffs = [abs(got[k][3] - lib[k]) for k in got]
    assert max(diffs) <= TOL
    assert all(got[k][0] == fit_of[k] for k in got)
    glob = query(
        wh,
        "select fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
        "and alias = 'champion' and segment is null",
    )[0][0]
    with_fit = {
        r[0] for r in query(wh, "select segment from mlsm_registry.fits where segment is not null")
    }
    for fid, seg, fallback, _, pct in got.values():
        assert fallback == (seg not in with_fit)
        assert (fid == glob) == fallback
        assert 0 <= pct <= 100
    assert any(seg is None and fb for _, seg, fb, _, _ in got.values())  # NULL country
    assert any(seg is not None and fb for _, seg, fb, _, _ in got.values())  # small country


def test_serving_state_routes_each_record_like_the_build(project):
    """The API's scorer (serving manifest -> compiled evaluator per segment fit) gives every
    open lead the published fit, segment, fallback flag, score and percentile."""
    from mlsm_py.serve.scoring import score_records
    from mlsm_py.serve.state import load_state

    s, _, _ = project
    wh = s.project.warehouse
    got = _published(wh)
    con = duckdb.connect(str(wh))
    try:
        feats = con.execute("select * from lead_features where converted is null").df()
    finally:
        con.close()
    records = [{k: (None if v != v else v) for k, v in r.items()} for r in feats.to_dict("records")]
    state = load_state(wh, s.defs, {})
    assert len(state.models["lead_a"].by_segment) >= 5
    results = score_records(state, records, ["lead_a"])
    assert len(results) == len(got)
    for res in results:
        (sc,) = res["scores"]
        fid, seg, fallback, score, pct = got[res["key"]]
        assert (sc["fit_id"], sc["segment"], sc["fallback"]) == (fid, seg, fallback)
        assert abs(sc["score"] - score) <= TOL and abs(sc["percentile"] - pct) <= TOL


def test_winners_span_segments_and_take_the_routed_fit(project):
    s, _, _ = project
    wh = s.project.warehouse
    rows = query(
        wh,
        "select w.lead_id, w.winning_model, w.winning_fit_id, w.score, sc.fit_id, sc.score, "
        "sc.segment from published.winners w join published.scores sc "
        "on sc.lead_id = w.lead_id and sc.model_name = w.winning_model and sc.role = 'champion'",
    )
    n_open = query(wh, "select count(*) from lead_features where converted is null")[0][0]
    assert len(rows) == n_open  # one winner per open lead, whichever segment
    assert {r[1] for r in rows} == {"lead_a"}  # the draft never wins
    assert all(r[2] == r[4] and r[3] == r[5] for r in rows)
    assert len({r[6] for r in rows}) >= 6  # records of many segments among the winners


def test_unseen_level_is_scored_by_the_fallback_and_says_so(project):
    s, _, _ = project
    wh = s.project.warehouse
    table = _leads()
    country = table.column("country").to_pylist()
    ids = table.column("lead_id").to_pylist()
    conv = table.column("converted").to_pylist()
    open_ids = [i for i, c in zip(ids, conv, strict=True) if c is None][:40]
    new = ["zz" if i in set(open_ids) else c for i, c in zip(ids, country, strict=True)]
    table = table.set_column(table.schema.get_field_index("country"), "country", pa.array(new))
    load(wh, table)
    try:
        row = run_build(s)
        got = _published(wh)
        # Only the changed records reach the routing table (no scorer changed its SQL).
        assert row["rescored"] == []
        routed = query(wh, "select lead_id from audit.lead_features__by_country order by 1")
        assert [k for (k,) in routed] == sorted(open_ids)
        lib, fit_of = _routed_library(s, wh)
        zz = {k: v for k, v in got.items() if v[1] == "zz"}
        assert sorted(zz) == sorted(open_ids)
        assert all(v[2] for v in zz.values())  # fallback
        assert all(v[0] == fit_of[k] and abs(v[3] - lib[k]) <= TOL for k, v in zz.items())
    finally:
        load(wh, _leads())  # the other tests read the original data
        run_build(s)


def test_failing_segment_is_skipped_keeps_its_champion_and_others_go_on(project):
    """A retrain where one country's outcomes are all negative: that segment is refused
    (its champion stays), every other segment and the global fit are decided."""
    s, tmp, _ = project
    wh = s.project.warehouse
    before = dict(
        query(
            wh,
            "select segment, fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
            "and alias = 'champion' and segment is not null",
        )
    )
    broken = "de"
    assert broken in before
    con = duckdb.connect(str(wh))
    try:
        con.execute(
            "update raw.leads set converted = 0 where country = ? and converted is not null",
            [broken],
        )
    finally:
        con.close()
    better = session(tmp, _defs("better"), dbt_dir=s.project.dbt_dir)
    outcomes = run_retrain(better)
    decided = {o.segment: o.outcome for o in outcomes}
    assert broken not in decided
    assert None in decided and len(decided) == len(before)  # global + every other segment
    assert "promoted" in decided.values()
    after = dict(
        query(
            wh,
            "select segment, fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
            "and alias = 'champion' and segment is not null",
        )
    )
    assert after[broken] == before[broken]
    refused = query(
        wh,
        "select reason from mlsm_registry.decisions where model_name = 'lead_a' "
        "and segment = ? and outcome = 'refused'",
        [broken],
    )
    assert len(refused) == 1 and "segment skipped" in refused[0][0]
    promoted = [seg for seg, o in decided.items() if o == "promoted" and seg is not None]
    assert all(after[seg] != before[seg] for seg in promoted)
    # The published rows follow the new champions, the broken segment its old one.
    got = _published(wh)
    lib, fit_of = _routed_library(better, wh)
    assert max(abs(got[k][3] - lib[k]) for k in got) <= TOL
    assert {v[0] for v in got.values() if v[1] == broken} == {before[broken]}


def test_one_segment_promote_and_rollback(project):
    s, tmp, _ = project
    wh = s.project.warehouse
    seg = "us"
    promoted = (
        "select count(*) from mlsm_registry.decisions where segment = ? "
        "and action = 'retrain' and outcome = 'promoted'"
    )
    if not query(wh, promoted, [seg])[0][0]:  # run alone: the better fits first
        run_retrain(session(tmp, _defs("better"), dbt_dir=s.project.dbt_dir))
    worse = session(tmp, _defs("weak"), dbt_dir=s.project.dbt_dir)
    run_retrain(worse)  # the weak fits lose to the better champions: challengers kept
    published_before = _published(wh)
    champ, chall = (
        dict(
            query(
                wh,
                "select alias, fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
                "and segment = ?",
                [seg],
            )
        )[a]
        for a in ("champion", "challenger")
    )
    others = query(
        wh,
        "select segment, fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
        "and alias = 'champion' and segment is distinct from ? order by segment",
        [seg],
    )
    promote(worse, "lead_a", segment=seg)
    run_build(worse)
    got = _published(wh)
    assert {v[0] for v in got.values() if v[1] == seg} == {chall}
    assert all(v == published_before[k] for k, v in got.items() if v[1] != seg)
    assert (
        query(
            wh,
            "select segment, fit_id from mlsm_registry.aliases where model_name = 'lead_a' "
            "and alias = 'champion' and segment is distinct from ? order by segment",
            [seg],
        )
        == others
    )
    d = query(
        wh,
        "select action, outcome, from_fit, to_fit from mlsm_registry.decisions "
        "where model_name = 'lead_a' and segment = ? order by decided_at desc limit 1",
        [seg],
    )[0]
    assert d == ("promote", "promoted", champ, chall)
    rollback(worse, "lead_a", segment=seg)
    run_build(worse)
    assert _published(wh) == published_before
    d = query(
        wh,
        "select action, from_fit, to_fit from mlsm_registry.decisions "
        "where model_name = 'lead_a' and segment = ? order by decided_at desc limit 1",
        [seg],
    )[0]
    assert d == ("rollback", chall, champ)


def test_review_mode_applies_every_segments_proposal_at_once(project):
    """`retrain --propose` on a segmented model proposes per segment; `promote --proposed`
    applies them all in one transaction, each with its own decision."""
    s, tmp, _ = project
    wh = s.project.warehouse
    base = _defs("weak")
    lenient = dataclasses.replace(base.models[0], promotion=Promotion("roc_auc", min_gain=-1.0))
    defs = Definitions([lenient, base.models[1]], base.summaries)
    s2 = session(tmp, defs, dbt_dir=s.project.dbt_dir)
    champions = (
        "select coalesce(segment, '-'), fit_id from mlsm_registry.aliases "
        "where model_name = 'lead_a' and alias = 'champion'"
    )
    before = dict(query(wh, champions))
    outcomes = run_retrain(s2, propose=True)
    proposed = {o.segment or "-": o.challenger_fit for o in outcomes if o.outcome == "proposed"}
    assert len(proposed) >= 3 and "-" in proposed
    assert dict(query(wh, champions)) == before  # proposals promote nothing
    promote_proposed(s2, "lead_a")
    after = dict(query(wh, champions))
    for seg, fit in after.items():
        assert fit == proposed.get(seg, before[seg]), seg
    applied = query(
        wh,
        "select coalesce(segment, '-'), to_fit, reason from mlsm_registry.decisions "
        "where model_name = 'lead_a' and action = 'promote' and outcome = 'promoted' "
        "and reason like 'applied by%' order by decided_at",
    )
    assert {r[0]: r[1] for r in applied if r[0] in proposed} == proposed
    run_build(s2)
    got = _published(wh)
    lib, fit_of = _routed_library(s2, wh)
    assert max(abs(got[k][3] - lib[k]) for k in got) <= TOL
    assert all(got[k][0] == fit_of[k] for k in got)

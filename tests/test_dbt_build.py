"""A real `dbt build` on a small generated data set with the demo's four models: scoring of the
open leads only, winners among live champions, the winner unit test, provenance columns, the
publication log, and write-audit-publish when the input breaks a contract."""

from __future__ import annotations

import dataclasses

import duckdb
import numpy as np
import pytest

from mlsm_py.dbt import writer
from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import BuildError
from mlsm_py.flow.build import run_build
from mlsm_py.flow.evaluate import evaluate_summaries
from mlsm_py.flow.session import scored_fits
from mlsm_py.registry import store
from mlsm_py.spec import METRIC_DIRECTIONS, SummaryModel
from mlsm_py.train.summary import Bands, pick, place
from models_py import PROJECT
from tests.helpers import build_project, load, published_vs_library, query, run_counts, session

pytestmark = pytest.mark.dbt
ROWS = 4000
TOLERANCE = 1e-9


# Every summary rule on the same scores, in one build: each is checked against Python.
RULES = ("highest_percentile", "priority", "highest_score", "mean_score")
DEFS = dataclasses.replace(
    PROJECT,
    summaries=(
        *PROJECT.summaries,
        *(
            SummaryModel(f"w_{r}", ("lead_logreg", "lead_forest", "lead_lgbm"), rule=r)
            for r in RULES
        ),
    ),
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    s = session(tmp_path_factory.mktemp("dbt"), DEFS)
    log = build_project(s, generate_leads(ROWS, seed=3))
    return s, log


def test_build_publishes_the_open_leads_only(built):
    s, log = built
    wh = s.project.warehouse
    (open_leads,) = query(wh, "select count(*) from lead_features where converted is null")[0]
    assert 0 < open_leads < ROWS
    (n_scores, n_leads, n_runs, nulls, closed) = query(
        wh,
        "select count(*), count(distinct s.lead_id), count(distinct run_id), "
        "count(*) filter (where score is null), count(*) filter (where f.converted is not null) "
        "from published.scores s join lead_features f using (lead_id)",
    )[0]
    assert n_leads == open_leads and n_scores == open_leads * len(PROJECT.models)
    assert n_runs == 1 and nulls == 0 and closed == 0  # a converted lead is never on the list
    for summary in DEFS.summaries:
        (n_winners, n_distinct, draft_wins) = query(
            wh,
            "select count(*), count(distinct lead_id), count(*) filter "
            "(where winning_model = 'lead_extra_trees') from published.winners "
            "where summary_model = ?",
            [summary.name],
        )[0]
        assert n_winners == open_leads and n_distinct == open_leads and draft_wins == 0
    assert log["rows_scored"] == open_leads and log["rows_new"] == open_leads


def _python_order(wh, summary) -> list[str]:
    """The ranked candidates, worked out from the registry here rather than by the writer."""
    live = [n for n in summary.models if DEFS.model(n).status == "live"]
    if summary.rule != "best_member":
        return live
    auc = dict(
        query(
            wh,
            "select a.model_name, m.value from mlsm_registry.aliases a join "
            "mlsm_registry.fit_metrics m using (fit_id) where a.alias = 'champion' "
            "and m.metric = ?",
            [summary.metric],
        )
    )
    sign = METRIC_DIRECTIONS[summary.metric]
    return sorted(live, key=lambda n: (-sign * auc[n], summary.priority[n]))


@pytest.mark.parametrize("summary", DEFS.summaries, ids=lambda s: s.rule)
def test_every_winner_rule_equals_its_python_form(built, summary):
    """The SQL rule and `train.summary.pick` agree on every published record: the same winner,
    score and percentile (percentiles placed on the breakpoints in the registry)."""
    s, _ = built
    wh = s.project.warehouse
    order = _python_order(wh, summary)
    scores = duckdb.connect(str(wh))
    try:
        long = scores.execute(
            "select lead_id, model_name, fit_id, score from published.scores "
            "where role = 'champion' and model_status = 'live' order by lead_id"
        ).df()
        points = {f: store.breakpoints(scores, f) for f in long["fit_id"].unique()}
        got = scores.execute(
            "select lead_id, winning_model, score, percentile from published.winners "
            "where summary_model = ? order by lead_id",
            [summary.name],
        ).df()
    finally:
        scores.close()
    wide = long.pivot(index="lead_id", columns="model_name", values="score")
    fit_of = long.groupby("model_name")["fit_id"].first()
    assert all(len(points[f]) == 101 for f in fit_of)
    S = {n: wide[n].to_numpy(dtype="float64") for n in order}
    P = {n: place(S[n], Bands.of(points[fit_of[n]])) for n in order}
    want = pick(summary.rule, order, S, P)
    assert got["lead_id"].tolist() == wide.index.tolist()
    if summary.rule == "mean_score":
        assert (got["winning_model"] == summary.name).all()
        assert got["percentile"].isna().all()
    else:
        names = np.array(order)[want.member]
        assert got["winning_model"].tolist() == names.tolist()
        np.testing.assert_allclose(got["percentile"], want.percentile, rtol=0, atol=1e-9)
        assert ((got["percentile"] >= 0) & (got["percentile"] <= 100)).all()
    np.testing.assert_allclose(got["score"], want.score, rtol=0, atol=1e-12)


def test_each_fit_evaluation_is_stored_in_the_registry(built):
    """Every fit's holdout evaluation: the metrics a promotion rule can name, lift per decile
    and calibration tables, with the holdout's rows."""
    s, _ = built
    wh = s.project.warehouse
    for fit_id, holdout_rows in query(wh, "select fit_id, holdout_rows from mlsm_registry.fits"):
        metrics = dict(
            query(
                wh, "select metric, value from mlsm_registry.fit_metrics where fit_id = ?", [fit_id]
            )
        )
        for name in ("roc_auc", "pr_auc", "log_loss", "brier", "capture_at_1", "lift_at_20"):
            assert name in metrics and metrics[name] == metrics[name], name
        tables = query(
            wh,
            "select table_name, count(*), sum(rows) from mlsm_registry.fit_bins "
            "where fit_id = ? group by table_name order by 1",
            [fit_id],
        )
        assert tables == [
            ("calibration", 10, holdout_rows),
            ("lift_by_decile", 10, holdout_rows),
            ("score_deciles", 10, holdout_rows),
        ]


def test_every_score_carries_its_band_on_the_stored_breakpoints(built):
    """Percentile and decile in published.scores equal the Python placement of each score on
    its fit's breakpoints (registry), for champions and challengers, live and draft."""
    from mlsm_py.dbt.unit_tests import decile

    s, _ = built
    con = duckdb.connect(str(s.project.warehouse))
    try:
        rows = con.execute(
            "select fit_id, score, percentile, decile from published.scores order by fit_id"
        ).df()
        points = {f: store.breakpoints(con, f) for f in rows["fit_id"].unique()}
    finally:
        con.close()
    for fit_id, part in rows.groupby("fit_id"):
        want = place(part["score"].to_numpy(), Bands.of(points[fit_id]))
        np.testing.assert_allclose(part["percentile"], want, rtol=0, atol=1e-9)
        assert part["decile"].tolist() == [decile(p) for p in want]
    assert rows["decile"].between(1, 10).all() and rows["percentile"].between(0, 100).all()


def test_summaries_are_evaluated_on_the_holdout_next_to_their_members(built):
    s, _ = built
    wh = s.project.warehouse
    with s.registry() as con:
        reports = {r.summary.name: r for r in evaluate_summaries(s, con)}
        fit_auc = dict(
            con.execute(
                "select a.model_name, m.value from mlsm_registry.aliases a join "
                "mlsm_registry.fit_metrics m using (fit_id) where a.alias = 'champion' "
                "and m.metric = 'roc_auc'"
            ).fetchall()
        )
    assert set(reports) == {x.name for x in DEFS.summaries}
    for r in reports.values():
        # Members trained in one run share the holdout: their numbers are the fits' own.
        for name, m in r.members.items():
            assert m["roc_auc"] == pytest.approx(fit_auc[name], abs=1e-12)
        best = max(r.members, key=lambda n: r.members[n]["roc_auc"])
        worse = any(r.metrics[k] < r.members[best][k] - 1e-9 for k in r.metrics if k != "rows")
        assert (r.warning() is not None) == worse, r.summary.rule
        if worse:
            assert f"loses to its best member {best}" in r.warning()
    default = reports["lead_winner"]
    assert default.summary.rule == "best_member" and default.warning() is None
    best = default.best_member()
    for k in ("roc_auc", "top_decile_capture"):
        assert default.metrics[k] == pytest.approx(default.members[best][k], abs=1e-12)
    # Training recorded the same evaluation in the registry, the summary's rows and each member's.
    rows = query(
        wh,
        "select summary_model, member, value from mlsm_registry.summary_metrics "
        "where sample = 'holdout' and metric = 'roc_auc'",
    )
    recorded = {(sm, mem): v for sm, mem, v in rows}
    for name, r in reports.items():
        assert recorded[(name, None)] == pytest.approx(r.metrics["roc_auc"], abs=1e-12)
        for member in r.members:
            assert (name, member) in recorded


def test_published_rows_carry_provenance(built):
    s, log = built
    wh = s.project.warehouse
    fits = dict(
        query(wh, "select model_name, fit_id from mlsm_registry.aliases where alias = 'champion'")
    )
    published = dict(query(wh, "select distinct model_name, fit_id from published.scores"))
    assert published == fits
    winners = query(
        wh,
        "select distinct winning_model, winning_fit_id from published.winners "
        "where winning_fit_id is not null",
    )
    assert all(fits[m] == f for m, f in winners)
    (run_id,) = query(wh, "select distinct run_id from published.scores")[0]
    build = query(
        wh,
        "select status, rows_scored, as_of, finished_at from mlsm_registry.builds where run_id = ?",
        [run_id],
    )
    assert build and build[0][0] == "published" and build[0][2] is not None


def test_call_list_is_open_leads_in_call_order_from_the_same_run(built):
    s, _ = built
    wh = s.project.warehouse
    rows = query(
        wh,
        "select c.call_rank, c.lead_id, c.score, c.winning_fit_id, c.country, c.run_id, "
        "w.score, w.winning_fit_id, w.run_id, f.converted, f.country, c.percentile "
        "from published.call_list c join published.winners w using (lead_id) "
        "join lead_features f using (lead_id) where w.summary_model = 'lead_winner' "
        "order by c.call_rank",
    )
    (winners,) = query(
        wh,
        "select count(*) from published.winners where winning_model is not null "
        "and summary_model = 'lead_winner'",
    )[0]
    assert len(rows) == winners > 0
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r[2] == r[6] and r[3] == r[7] and r[5] == r[8] for r in rows)  # the same run
    assert all(r[9] is None for r in rows)  # open leads only
    # Call order: percentile (the best_member rule's comparable scale), then score.
    assert all((a[11], a[2]) >= (b[11], b[2]) for a, b in zip(rows, rows[1:], strict=False))
    assert all(r[4] == r[10] for r in rows)
    # Every published column is described, in the warehouse too.
    comments = dict(
        query(
            wh,
            "select column_name, comment from duckdb_columns() where schema_name = 'published' "
            "and table_name = 'call_list'",
        )
    )
    assert comments["call_rank"].startswith("1 = call first") and comments["country"]
    assert all(comments.values()), comments
    (table_comment,) = query(
        wh,
        "select comment from duckdb_tables() where schema_name = "
        "'published' and table_name = 'call_list'",
    )[0]
    assert "call order" in table_comment


def test_winner_unit_test_ran(built):
    s, _ = built
    assert "winner_rule" in (s.project.dbt_dir / "models/scores/_scores.yml").read_text()


def test_scores_equal_python_model(built):
    """Every open lead's published score is the library's own prediction."""
    s, _ = built
    diffs = published_vs_library(s)
    assert max(diffs.values()) <= TOLERANCE, diffs


CORRUPTIONS = [
    # (update of raw.leads, the column, the rule in words, offending rows, a sample value,
    # the offending keys)
    (
        "visits = -5 where lead_id in (7, 8, 9)",
        "lead_features.visits",
        "visits must be a number >= 0 and <= 100000 (not NaN)",
        3,
        "-5",
        "lead_id 7, 8, 9",
    ),
    (
        "session_minutes = 'infinity'::double where lead_id in (11, 12)",
        "lead_features.session_minutes",
        "session_minutes must be a finite number (not NaN, +inf or -inf)",
        2,
        "+inf",
        "lead_id 11, 12",
    ),
    (
        "country = 'xx' where lead_id = 13",
        "lead_features.country",
        "country must be one of: de, fr, gb",
        1,
        "'xx'",
        "lead_id 13",
    ),
    (
        "quotes_requested = 5000 where lead_id in (14, 15)",
        "lead_features.quotes_requested",
        "quotes_requested must be a number >= 0 and <= 1000 (not NaN)",
        2,
        "5000",
        "lead_id 14, 15",
    ),
    (
        "pages_viewed = null where lead_id = 16",
        "lead_features.pages_viewed",
        "pages_viewed must not be NULL",
        1,
        None,
        "lead_id 16",
    ),
]


def test_every_bad_input_is_reported_at_once_and_nothing_is_published(built):
    s, _ = built
    wh = s.project.warehouse
    before = run_counts(wh)
    before_w = run_counts(wh, "winners")
    con = duckdb.connect(str(wh))
    for update, *_ in CORRUPTIONS:
        con.execute(f"update raw.leads set {update}")
    con.close()
    with pytest.raises(BuildError) as err:
        run_build(s)
    lines = str(err.value).splitlines()[1:]
    for _, where, words, rows, value, keys in CORRUPTIONS:
        line = next((ln for ln in lines if ln.strip("- ").startswith(where + ":")), None)
        assert line is not None, (where, lines)
        assert f"{rows} rows break the rule" in line and words in line, line
        if value is not None:
            assert f"e.g. {value}" in line, line
        assert line.endswith(f"({keys})"), line
    # Nothing was published: same run, same rows; the failure is in the publication log.
    assert run_counts(wh) == before
    assert run_counts(wh, "winners") == before_w
    failed = query(wh, "select failed_checks from mlsm_registry.builds where status = 'failed'")
    assert failed and all(c[1] in failed[-1][0] for c in CORRUPTIONS)
    # Repair the data from a fresh copy: the next build publishes a new run.
    load(wh, generate_leads(ROWS, seed=3))
    run_build(s)
    after = query(wh, "select run_id from published.winners group by run_id order by run_id")
    assert len(after) == 1 and after[0][0] != before_w[0][0]


def test_text_in_a_number_column_is_a_contract_failure(built):
    """A CRM export with text where a number belongs: the check on raw.leads names the column
    and the value, and staging is skipped instead of failing with a cast error."""
    s, _ = built
    wh = s.project.warehouse
    before = run_counts(wh)
    con = duckdb.connect(str(wh))
    con.execute(
        "create or replace table raw.leads as select * replace (case when lead_id = 21 "
        "then 'twelve' else cast(visits as varchar) end as visits) from raw.leads"
    )
    con.close()
    with pytest.raises(BuildError) as err:
        run_build(s)
    text = str(err.value)
    assert "raw.leads.visits: 1 rows break the rule" in text, text
    assert "visits must be readable as integer" in text and "e.g. 'twelve'" in text
    assert "Conversion Error" not in text
    assert run_counts(wh) == before
    load(wh, generate_leads(ROWS, seed=3))
    run_build(s)


def test_generated_files_are_the_registry_rendered(built):
    """Same registry, same bytes: rendering again changes nothing on disk, and each file
    names its fit."""
    s, _ = built
    con = store.connect(s.project.warehouse)
    try:
        files = writer.render(s.defs, scored_fits(con, s.defs))
        fits = store.aliases(con)
    finally:
        con.close()
    assert writer.write(s.project.dbt_dir, files) == []
    for m, al in fits.items():
        path = next((s.project.dbt_dir / "models" / "scores").glob(f"score__{m}.*"))
        text = path.read_text()
        assert text.splitlines()[0].lstrip("-# ").startswith("Generated by mlsm")
        assert al["champion"] in text
        assert "model_status" not in text and "'live'" not in text  # status is not in the fit


def test_registry_holds_every_fit_and_artifact(built):
    s, _ = built
    from mlsm_py.registry import artifacts

    rows = query(
        s.project.warehouse,
        "select model_name, artifact_path, artifact_sha256, parity_passed, task, route "
        "from mlsm_registry.fits order by model_name",
    )
    assert sorted(r[0] for r in rows) == sorted(m.name for m in PROJECT.models)
    for _, rel, sha, passed, task, _route in rows:
        assert rel == f"{sha}.skops"  # content-addressed, relative to the artifacts root
        est = artifacts.load(artifacts.resolve(s.project.warehouse, rel), sha)
        assert hasattr(est, "predict") and passed and task == "classifier"

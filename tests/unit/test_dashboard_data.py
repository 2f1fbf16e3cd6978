"""The dashboard's realised chart on a segmented model: one series per segment fit, so a
cohort's bars are ROC AUCs, never several fits' values stacked into one bar."""

from __future__ import annotations

import duckdb

from mlsm_py.dashboard import data


def test_realised_rows_name_their_segment(tmp_path):
    path = tmp_path / "readers.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema monitoring; create schema mlsm_registry")
    con.execute(
        "create table monitoring.realised_performance as select * from (values "
        "('2026-01-01'::timestamp, 'm', 'champion', 'f_glob', 100, 10, 0.8, 0.3, 0.1, 0.1), "
        "('2026-01-01'::timestamp, 'm', 'champion', 'f_de', 50, 5, 0.7, 0.2, 0.1, 0.1)) "
        "t(cohort, model_name, role, fit_id, records, positives, roc_auc, capture_at_10, "
        "mean_score, observed_rate)"
    )
    con.execute(
        "create table mlsm_registry.fits as select * from (values ('f_glob', null), "
        "('f_de', 'de')) t(fit_id, segment)"
    )
    con.close()
    with data.reading(path) as con:
        page = data.load(con, "lead_id", None, data.Filters())
    got = page.realised.set_index("fit_id")["segment"].to_dict()
    assert got == {"f_glob": "", "f_de": "de"}
    # One row per (cohort, model, role, segment): nothing for the chart to stack.
    keys = page.realised[["cohort", "model", "role", "segment"]]
    assert not keys.duplicated().any() and page.realised["roc_auc"].max() <= 1

"""The registry's tables in the warehouse (schema mlsm_registry), declared as a dbt source.

fits            one row per registered fit: what it computes (the SQL), where its artifact is,
                its split bounds and parity result
fit_metrics     the fit's metrics on its own holdout, one row per metric
aliases         champion / challenger per model; exactly one champion per trained model
decisions       the audit trail: every promotion, refusal, rollback and forced change
decision_metrics the metrics both fits were compared on, on the same rows, one row per metric
builds          the publication log: one row per build, published or failed
generated_files each generated score model file as mlsm last wrote it (path, sha256): the dbt
                provenance test compares the file dbt reads with it
pending         aliases a running `mlsm retrain` applies when (and only if) it publishes
fit_bins        each fit's holdout tables: lift per score decile, 10-bin calibration
fit_input_reference each fit's training distribution of every input: decile bins of numbers,
                level shares of categories, NULL/NaN and unseen levels as bins of their own
fit_samples     which rows each fit saw as train / validation / test (keys and labels)

`segment` (fits, aliases, decisions, pending, fit_samples) is the level of a segmented model's
segment fit (its `segment_by` values joined by '|'); NULL is a model's global fit: the only fit
of an unsegmented model, the fallback of a segmented one. Aliases are per (model, segment).
build_volumes   each published build's row count per feature relation (the volume check)
score_breakpoints each fit's 101 holdout-score quantiles: its percentile scale
summary_metrics each summary model evaluated next to its members, on the holdout or on
                realised outcomes

No primary keys: DuckDB checks them eagerly inside a transaction (a delete followed by an
insert of the same key fails), and the rules are kept by the code that writes the rows and
checked by tests on the source.
"""

from __future__ import annotations

SCHEMA = "mlsm_registry"

TABLES = {
    "fits": """
        fit_id varchar not null,
        model_name varchar not null,
        model_version integer not null,
        task varchar not null,
        outputs varchar not null,
        estimator varchar not null,
        route varchar not null,
        route_reason varchar,
        trained_at timestamptz not null,
        trained_by varchar not null,
        train_rows bigint not null,
        holdout_rows bigint not null,
        immature_rows bigint not null,
        data_hash varchar not null,
        definition_hash varchar not null,
        as_of timestamp,
        matured_until timestamp,
        holdout_from timestamp,
        train_before timestamp,
        validation_from timestamp,
        scoring_sql varchar,
        dbt_sql varchar not null,
        dbt_sql_sha256 varchar not null,
        artifact_path varchar not null,
        artifact_sha256 varchar not null,
        parity_rows_checked bigint not null,
        parity_max_abs_diff double,
        parity_tolerance double not null,
        parity_passed boolean not null,
        parity varchar not null,
        segment varchar,
        reasons varchar,
        dialect varchar,
        route_timing varchar
    """,
    "fit_metrics": """
        fit_id varchar not null,
        metric varchar not null,
        value double
    """,
    "aliases": """
        model_name varchar not null,
        alias varchar not null,
        fit_id varchar not null,
        since timestamptz not null,
        set_by varchar not null,
        decision_id varchar,
        segment varchar
    """,
    "decisions": """
        decision_id varchar not null,
        decided_at timestamptz not null,
        model_name varchar not null,
        action varchar not null,
        actor varchar not null,
        from_fit varchar,
        to_fit varchar,
        rule varchar,
        outcome varchar not null,
        reason varchar not null,
        eval_rows bigint,
        eval_from timestamp,
        eval_until timestamp,
        run_id varchar,
        segment varchar
    """,
    "decision_metrics": """
        decision_id varchar not null,
        fit_id varchar not null,
        role varchar not null,
        metric varchar not null,
        value double
    """,
    "builds": """
        run_id varchar not null,
        command varchar not null,
        actor varchar not null,
        started_at timestamptz not null,
        finished_at timestamptz,
        status varchar not null,
        as_of timestamp,
        rows_scored bigint,
        rows_new bigint,
        failed_checks varchar,
        message varchar
    """,
    "generated_files": """
        path varchar not null,
        sha256 varchar not null,
        fit_id varchar,
        written_at timestamptz not null
    """,
    "pending": """
        run_id varchar not null,
        model_name varchar not null,
        alias varchar not null,
        fit_id varchar,
        decision_id varchar,
        segment varchar
    """,
    "fit_bins": """
        fit_id varchar not null,
        table_name varchar not null,
        bin integer not null,
        lower double,
        upper double,
        rows bigint not null,
        positives double,
        mean_score double,
        observed_rate double,
        lift double
    """,
    "fit_input_reference": """
        fit_id varchar not null,
        column_name varchar not null,
        kind varchar not null,
        bin integer not null,
        lower double,
        upper double,
        level varchar,
        share double not null
    """,
    "fit_samples": """
        fit_id varchar not null,
        segment varchar,
        record_key varchar not null,
        sample varchar not null,
        label double
    """,
    "build_volumes": """
        run_id varchar not null,
        relation varchar not null,
        rows bigint not null
    """,
    "score_breakpoints": """
        fit_id varchar not null,
        percentile integer not null,
        score double not null
    """,
    "summary_metrics": """
        evaluation_id varchar not null,
        evaluated_at timestamptz not null,
        run_id varchar,
        summary_model varchar not null,
        rule varchar not null,
        sample varchar not null,
        eval_from timestamp,
        eval_until timestamp,
        member varchar,
        fit_id varchar,
        metric varchar not null,
        value double
    """,
}
# Same columns as decisions: a retrain's decisions wait here until its build publishes.
TABLES["pending_decisions"] = TABLES["decisions"]

DESCRIPTIONS = {
    "fits": "One row per registered fit: the SQL it computes, its artifact, bounds and parity.",
    "fit_metrics": "Each fit's metrics on its own holdout, one row per metric.",
    "aliases": "Champion and challenger per model and segment (NULL: the global fit); "
    "exactly one champion per trained model and segment.",
    "decisions": "Audit trail: every promotion, refusal, rollback and forced change.",
    "decision_metrics": "The metrics of both fits a decision compared, on the same rows.",
    "builds": "Publication log: one row per build, published or failed.",
    "generated_files": "Each generated score model as mlsm last wrote it: path and sha256.",
    "pending": "Aliases a running retrain applies when it publishes (empty between runs).",
    "pending_decisions": "Decisions a running retrain records when it publishes.",
    "fit_bins": "Each fit's holdout tables: lift per score decile (table_name "
    "'lift_by_decile', bin 10 = the highest scores) and a 10-bin calibration table "
    "('calibration': mean predicted against observed rate).",
    "fit_input_reference": "Each fit's training distribution of every input (bin 0: NULL "
    "or NaN; numbers: bin i is (lower, upper]; categories: one bin per level, the last for "
    "levels training never saw): what input drift is measured against.",
    "fit_samples": "Which records each fit saw as train, validation (early stopping) or "
    "test (its holdout): record_key (as text), sample, label.",
    "build_volumes": "Rows per feature relation of each published build (the volume check).",
    "score_breakpoints": "Each fit's 101 holdout-score quantiles (percentile 0..100): the "
    "scale its percentiles are read on.",
    "summary_metrics": "Each summary model evaluated next to its members (member NULL: the "
    "summary), on the holdout (sample 'holdout') or on realised outcomes ('realised').",
}


def ddl() -> list[str]:
    out = [f"create schema if not exists {SCHEMA}"]
    for name, cols in TABLES.items():
        out.append(f"create table if not exists {SCHEMA}.{name} ({cols.strip()})")
    return out


def columns(table: str) -> list[tuple[str, str]]:
    """(name, type) of each column `TABLES` declares for `table` (constraints dropped)."""
    out = []
    for line in TABLES[table].strip().split(","):
        name, type_, *_ = line.split()
        out.append((name, type_))
    return out


def upgrades(present: dict[str, set[str]]) -> list[str]:
    """ALTERs that add the columns a newer mlsm declares to a registry an older one created
    ({table: its columns}). Added columns are nullable: old rows hold NULL, nothing is lost."""
    out = []
    for table, cols in present.items():
        for name, type_ in columns(table):
            if name not in cols:
                out.append(f"alter table {SCHEMA}.{table} add column {name} {type_}")
    return out

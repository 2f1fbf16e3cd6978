"""The monitoring layer: views over the history mlsm keeps (see `flow.history`) and the
outcomes, so they are current whenever they are read, with no rebuild:

score_distribution     every build's score checks per model and fit (rows, NULL share,
                       mean, PSI against the holdout, level), published or failed
input_drift_history    every build's input drift per model and input
realised_performance   per scoring cohort (the day a record was first scored), model, role and
                       fit: records with an outcome, positives, ROC AUC, top-10% capture, mean
                       score against observed rate
realised_calibration   the same per score decile: mean score against observed rate
first_scores_with_outcomes  what the realised views read: each record's first score, outcome
champion_vs_challenger per cohort and model: champion and challenger on the same records

ROC AUC is the rank form (Mann-Whitney, ties at their average rank), equal to scikit-learn's.
"""

from __future__ import annotations

from mlsm_py.dbt.common import header as _header
from mlsm_py.spec import Definitions

CONFIG = "{{ config(materialized='view', schema='monitoring') }}\n\n"
JOINED = "joined as (\n\n    select * from {{ ref('first_scores_with_outcomes') }}\n\n)"
GROUP = "cohort, model_name, role, fit_id"


def _outcomes(defs: Definitions) -> tuple[str, str, str, str | None]:
    """(relation, key, outcome, outcome_at): the declared outcomes, else the first model's."""
    o = defs.outcomes
    if o is not None:
        return o.relation, o.key, o.outcome, o.outcome_at
    m = defs.models[0]
    return m.features, m.key, m.target, None


def _first_scores(key: str, outcome_sql: str, timed: bool) -> str:
    """CTEs: each record's first published score per model and role, joined to its outcome.
    Only records with an outcome are ranked: the window partitions by record, so dropping
    the others first changes no row, and the open records' history (every rescored batch
    of a 15-minute schedule) is never sorted."""
    return (
        "scores as (\n\n    select * from {{ source('history', 'scores') }}\n\n),\n\n"
        f"outcomes as (\n\n{outcome_sql}\n\n),\n\n"
        "firsts as (\n\n    select\n        scores.*,\n        row_number() over (\n"
        f"            partition by {key}, model_name, role order by published_at\n"
        "        ) as nth\n    from scores\n    where score is not null\n"
        f"        and {key} in (select {key} from outcomes)\n\n),\n\n"
        "joined as (\n\n    select\n"
        f"        cast({{{{ dbt.date_trunc('day', 'firsts.published_at') }}}} as date) as cohort,\n"
        f"        firsts.{key},\n        firsts.model_name,\n        firsts.role,\n"
        "        firsts.fit_id,\n        firsts.score,\n        firsts.decile,\n"
        "        outcomes.outcome\n    from firsts\n"
        f"    inner join outcomes on outcomes.{key} = firsts.{key}\n"
        "    where firsts.nth = 1"
        + ("\n        and outcomes.outcome_at > firsts.published_at" if timed else "")
        + "\n\n)"
    )


def _auc_and_capture(source: str, group: str, key: str) -> str:
    return (
        f"ranked as (\n\n    select\n        {source}.*,\n"
        f"        rank() over (partition by {group} order by score) as score_rank,\n"
        f"        count(*) over (partition by {group}, score) as ties,\n"
        f"        row_number() over (partition by {group} order by score desc, {key}) "
        "as call_rank,\n"
        f"        count(*) over (partition by {group}) as group_rows\n"
        f"    from {source}\n\n),\n\n"
        "final as (\n\n    select\n"
        f"        {group},\n        count(*) as records,\n"
        "        sum(outcome) as positives,\n        avg(score) as mean_score,\n"
        "        avg(cast(outcome as {{ mlsm.type_double() }})) as observed_rate,\n"
        "        (sum(case when outcome = 1 then score_rank + (ties - 1) / 2.0 else 0 end)\n"
        "            - sum(outcome) * (sum(outcome) + 1) / 2.0)\n"
        "            / nullif(sum(outcome) * (count(*) - sum(outcome)), 0) as roc_auc,\n"
        "        cast(sum(case when call_rank <= ceil(0.1 * group_rows) then outcome else 0 end)"
        " as {{ mlsm.type_double() }})\n"
        "            / nullif(sum(outcome), 0) as capture_at_10\n"
        f"    from ranked\n    group by {group}\n\n)\n\nselect * from final\n"
    )


def views(defs: Definitions) -> dict[str, str]:
    relation, okey, ocol, at = _outcomes(defs)
    key = defs.models[0].key
    when = f", {at} as outcome_at" if at else ""
    outcome_sql = (
        f"    select {okey} as {key}, cast({ocol} as integer) as outcome{when}\n"
        f"    from {{{{ ref('{relation}') }}}}\n    where {ocol} is not null"
    )
    head = lambda text: _header([text], "--") + "\n" + CONFIG  # noqa: E731
    out = {
        "score_distribution": head("every build's score checks (history.score_checks)")
        + "select * from {{ source('history', 'score_checks') }}\n",
        "input_drift_history": head("every build's input drift (history.input_drift)")
        + "select * from {{ source('history', 'input_drift') }}\n",
        "first_scores_with_outcomes": head(
            "each record's first published score per model and role, with its outcome once "
            "known: what the realised views judge"
        )
        + "with\n\n"
        + _first_scores(key, outcome_sql, at is not None)
        + "\n\nselect * from joined\n",
        "realised_performance": head(
            "realised performance per scoring cohort, model, role and fit: each record's "
            "first published score against its outcome"
        )
        + "with\n\n"
        + JOINED
        + ",\n\n"
        + _auc_and_capture("joined", GROUP, key),
        "realised_calibration": head("mean score against observed rate per score decile")
        + "with\n\n"
        + JOINED
        + ",\n\nfinal as (\n\n    select\n"
        f"        {GROUP},\n        decile,\n        count(*) as records,\n"
        "        avg(score) as mean_score,\n"
        "        avg(cast(outcome as {{ mlsm.type_double() }})) as observed_rate\n"
        f"    from joined\n    where decile is not null\n    group by {GROUP}, decile\n\n)\n\n"
        "select * from final\n",
        "champion_vs_challenger": head(
            "champion and challenger of each model on the same records (both first scores "
            "known, outcome arrived)"
        )
        + "with\n\n"
        + JOINED
        + ",\n\npaired as (\n\n    select joined.*\n    from joined\n"
        f"    where joined.{key} in (\n        select {key} from joined as challenged\n"
        "        where challenged.role = 'challenger'\n"
        "            and challenged.model_name = joined.model_name\n    )\n\n),\n\n"
        + _auc_and_capture("paired", "cohort, model_name, role", key),
    }
    return out


def sources_yml() -> dict:
    tables = {
        "scores": "A row when a record's score by a model and role first appears or changes.",
        "winners": "A row when a record's winner per summary model first appears or changes.",
        "input_drift": "Every build's input-drift rows, published or failed (build_status).",
        "score_checks": "Every build's score-check rows, published or failed (build_status).",
    }
    return {
        "version": 2,
        "sources": [
            {
                "name": "history",
                "description": "What mlsm keeps after each build: the score history and the "
                "check results (flow/history.py).",
                "schema": "history",
                "tables": [{"name": n, "description": d} for n, d in tables.items()],
            }
        ],
    }


def views_yml() -> list[dict]:
    perf_cols = [
        ("cohort", "The day the records were first scored."),
        ("model_name", "The model."),
        ("role", "champion or challenger when the record was first scored."),
        ("fit_id", "The fit that scored it (mlsm_registry.fits)."),
        ("records", "Records of the cohort with an outcome."),
        ("positives", "Of those, converted."),
        ("mean_score", "Mean first score."),
        ("observed_rate", "Share converted."),
        ("roc_auc", "ROC AUC of the first scores against the outcomes."),
        ("capture_at_10", "Share of the conversions in the cohort's top 10% of scores."),
    ]
    cols = lambda pairs: [{"name": n, "description": d} for n, d in pairs]  # noqa: E731
    return [
        {
            "name": "first_scores_with_outcomes",
            "description": "Each record's first published score per model and role, joined to "
            "its outcome once known (the scoring cohort is the day of that score).",
        },
        {
            "name": "score_distribution",
            "description": "Every build's score checks per model and fit: rows, NULL share, "
            "mean, PSI against the holdout, level, and whether the build published.",
        },
        {
            "name": "input_drift_history",
            "description": "Every build's input drift per model and input: PSI against the "
            "champion's training data, unseen levels, level, and whether the build published.",
        },
        {
            "name": "realised_performance",
            "description": "The models' real performance once outcomes arrive: per scoring "
            "cohort, model, role and fit.",
            "columns": cols(perf_cols),
        },
        {
            "name": "realised_calibration",
            "description": "Per cohort, model, role, fit and score decile: mean first score "
            "against the observed conversion rate.",
        },
        {
            "name": "champion_vs_challenger",
            "description": "Champion and challenger of each model on the same records, once "
            "their outcomes arrived: per cohort, model and role.",
            "columns": cols([p for p in perf_cols if p[0] != "fit_id"]),
        },
    ]

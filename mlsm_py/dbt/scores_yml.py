"""The checks on every score (data checker 2): per score model, the long `scores` table, the
winners and the winner rule's unit test. Tests follow each fit's declared outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlsm_py.registry.schema import DESCRIPTIONS, SCHEMA
from mlsm_py.spec import SummaryModel

RUN_DOCS = {
    "fit_id": "The registered fit that computed the score (mlsm_registry.fits).",
    "run_id": "The build that published the row (mlsm_registry.builds: when, as of when).",
    "scored_run_id": "The build that scored the row: a record nothing changed for keeps the "
    "build that last scored it (mlsm_registry.builds).",
}


def score_model_yml(dbt_name: str, m: Any, alias: str, fit: dict) -> dict:
    """Tests from the declared output roles: a probability must lie in [0, 1]; a decision
    function or a prediction is unbounded. Every score model is checked against the registry."""
    import json

    outputs = json.loads(fit["outputs"])
    columns = [
        {
            "name": m.key,
            "data_tests": [
                {"unique": {"name": f"{dbt_name}__{m.key}__unique"}},
                {"not_null": {"name": f"{dbt_name}__{m.key}__not_null"}},
            ],
        },
        {"name": "fit_id", "description": "The registered fit that computed the score."},
    ]
    for out in outputs:
        tests: list = [{"not_null": {"name": f"{dbt_name}__{out['name']}__not_null"}}]
        if out["role"] == "probability":
            tests.append(
                {
                    "mlsm.accepted_range": {
                        "name": f"{dbt_name}__{out['name']}__between_0_and_1",
                        "arguments": {"min_value": 0, "max_value": 1},
                    }
                }
            )
        describe = {
            "probability": "Positive-class probability",
            "decision": "Decision function (unbounded; higher means more likely positive)",
            "prediction": "Predicted value",
        }[out["role"]]
        columns.append({"name": out["name"], "description": describe, "data_tests": tests})
    return {
        "name": dbt_name,
        "description": f"{alias.capitalize()} scores of {m.name} v{m.version} ({m.status}) for "
        f"every record of {m.features}{' in its population' if m.population else ''}. "
        f"{m.description}".strip(),
        "data_tests": [
            {
                "mlsm.registered_fit": {
                    "name": f"{dbt_name}__fit_is_registered_{alias}",
                    "arguments": {"model_name": m.name, "role": alias, "fit_id": fit["fit_id"]},
                }
            }
        ],
        "columns": columns,
    }


def scores_yml(key: str) -> dict:
    return {
        "name": "scores",
        "description": "Every record scored by every model's champion and challenger (live and "
        "draft), with the fit that scored it and the dbt invocation id of the run.",
        "data_tests": [
            {
                "mlsm.unique_combination_of_columns": {
                    "name": f"scores__one_row_per_{key}_per_model_and_role",
                    "arguments": {"combination_of_columns": [key, "model_name", "role"]},
                }
            }
        ],
        "columns": [
            {
                "name": key,
                "description": "Record key.",
                "data_tests": [{"not_null": {"name": f"scores__{key}__not_null"}}],
            },
            {"name": "model_name", "description": "The model, as named in the definitions."},
            {"name": "model_version", "description": "The model's version."},
            {"name": "fit_id", "description": RUN_DOCS["fit_id"]},
            {
                "name": "role",
                "description": "champion, or challenger (shadow-scored, never wins)",
                "data_tests": [
                    {
                        "accepted_values": {
                            "name": "scores__role__accepted",
                            "arguments": {"values": ["champion", "challenger"]},
                        }
                    }
                ],
            },
            {"name": "model_status", "description": "live or draft (drafts never win)"},
            {
                "name": "score",
                "description": "The model's score: a probability, decision function or "
                "prediction, as the fit declares (mlsm_registry.fits.outputs).",
                "data_tests": [{"not_null": {"name": "scores__score__not_null"}}],
            },
            *BAND_COLUMNS("scores"),
            {"name": "run_id", "description": RUN_DOCS["scored_run_id"]},
            {
                "name": "segment",
                "description": "A segmented model's segment of the record (its segment_by "
                "values, joined by '|'); NULL for an unsegmented model or a NULL level.",
            },
            {
                "name": "fallback",
                "description": "True when a segmented model's global fit scored the record: "
                "its segment has no fit (below the declared minimum, first seen at scoring "
                "time, or NULL). Always false for an unsegmented model.",
                "data_tests": [{"not_null": {"name": "scores__fallback__not_null"}}],
            },
        ],
    }


def BAND_COLUMNS(table: str) -> list[dict]:  # noqa: N802 - reads as the columns it returns
    """percentile and decile: on the fit's bands stored at training, never re-ranked per batch;
    NULL only for a NULL score (or a blend)."""
    # A NaN score fails the score checks already; a blend's winner (no fit) has no bands.
    where = {"where": "score is not null" if table == "scores" else "winning_fit_id is not null"}
    return [
        {
            "name": "percentile",
            "description": "Where the score lies among its fit's holdout scores, 0 to 100 "
            "(mlsm_registry.score_breakpoints, stored at training): a record's percentile does "
            "not depend on the other records of the batch. NULL for a NULL score.",
            "data_tests": [
                {"not_null": {"name": f"{table}__percentile__not_null", "config": where}},
                {
                    "mlsm.accepted_range": {
                        "name": f"{table}__percentile__between_0_and_100",
                        "arguments": {"min_value": 0, "max_value": 100},
                    }
                },
            ],
        },
        {
            "name": "decile",
            "description": "1 to 10 from the percentile (10 = the top tenth: percentile 90 to "
            "100). NULL for a NULL score.",
            "data_tests": [
                {"not_null": {"name": f"{table}__decile__not_null", "config": where}},
                {
                    "mlsm.accepted_range": {
                        "name": f"{table}__decile__between_1_and_10",
                        "arguments": {"min_value": 1, "max_value": 10},
                    }
                },
            ],
        },
    ]


def winners_yml(key: str, summaries: Sequence[SummaryModel] = (), live: Sequence[str] = ()) -> dict:
    srm = []
    for s in summaries:
        members = [m for m in s.models if m in live]
        if s.split is None and members:
            srm.append(
                {
                    "mlsm.winner_coverage": {
                        "name": f"winners__{s.name}__every_record_has_a_winner",
                        "arguments": {
                            "scores": "ref('scores')",
                            "key": key,
                            "summary_model": s.name,
                            "members": members,
                        },
                    }
                }
            )
        if s.split is not None:
            from scipy.stats import chi2

            srm.append(
                {
                    "mlsm.sample_ratio": {
                        "name": f"winners__{s.name}__sample_ratio",
                        "arguments": {
                            "summary_model": s.name,
                            "shares": [[m, share] for m, share in s.split.arms],
                            # p < 0.001 for arms - 1 degrees of freedom
                            "critical": round(float(chi2.ppf(0.999, len(s.split.arms) - 1)), 6),
                        },
                    }
                }
            )
    return {
        "name": "winners",
        "description": "One row per record and summary model: the winning live champion, its "
        "version, fit, score and percentile, by the summary's rule. NULL/NaN scores never "
        "win; ties and fallbacks follow the ranked members.",
        "data_tests": [
            {
                "mlsm.unique_combination_of_columns": {
                    "name": f"winners__one_row_per_{key}_per_summary",
                    "arguments": {"combination_of_columns": [key, "summary_model"]},
                }
            },
            *srm,
        ],
        "columns": [
            {
                "name": key,
                "description": "Record key.",
                "data_tests": [{"not_null": {"name": f"winners__{key}__not_null"}}],
            },
            {"name": "summary_model", "description": "The summary model that picked the winner."},
            {"name": "winning_model", "description": "The winning model (NULL: no valid score)."},
            {"name": "winning_version", "description": "The winning model's version."},
            {"name": "winning_fit_id", "description": RUN_DOCS["fit_id"]},
            {
                "name": "score",
                "description": "The winning score (for a mean_score summary, the mean of the "
                "valid member scores; winning_model is then the summary itself).",
            },
            *BAND_COLUMNS("winners"),
            {
                "name": "arm",
                "description": "The record's arm in a split summary model (md5 of salt:key); "
                "NULL for the other rules.",
            },
            {"name": "run_id", "description": RUN_DOCS["run_id"]},
        ],
    }


def call_list_yml(summary: SummaryModel, first: Any) -> dict:
    """The call list's columns, each described: what a sales rep reads."""
    cl = summary.call_list
    assert cl is not None
    fields = {f.name: f for f in first.fields}
    key = first.key

    def about(c: str) -> str:
        if c == first.split.column:
            return f"When the record was created ({c})."
        f = fields[c]
        return f.description or f"{c} ({f.type})"

    return {
        "name": cl.name,
        "description": cl.description
        or f"Open records in call order: the winner of {summary.name} per record, its fit and "
        "score, and the record's attributes, all from the same audited run.",
        "columns": [
            {
                "name": "call_rank",
                "description": "1 = call first: by the summary's rule (percentile, then score, "
                "for rules that compare percentiles), ties by key.",
                "data_tests": [
                    {"unique": {"name": f"{cl.name}__call_rank__unique"}},
                    {"not_null": {"name": f"{cl.name}__call_rank__not_null"}},
                ],
            },
            {
                "name": key,
                "description": "Record key.",
                "data_tests": [{"unique": {"name": f"{cl.name}__{key}__unique"}}],
            },
            {"name": "score", "description": "The winning score."},
            {
                "name": "percentile",
                "description": "The winning score's percentile among its fit's holdout "
                "scores (0 to 100, stored at training).",
            },
            {"name": "decile", "description": "1 to 10 from the percentile (10 = the top)."},
            {"name": "winning_model", "description": "The model whose score won."},
            {"name": "winning_version", "description": "The winning model's version."},
            {"name": "winning_fit_id", "description": RUN_DOCS["fit_id"]},
            *({"name": c, "description": about(c)} for c in cl.columns),
            {"name": "run_id", "description": RUN_DOCS["run_id"]},
        ],
    }


def docs_of(model_yml: dict) -> tuple[str, dict[str, str]]:
    """(table description, {column: description}) of a model's yml, for warehouse comments."""
    cols = {c["name"]: c["description"] for c in model_yml["columns"] if c.get("description")}
    return model_yml.get("description", ""), cols


def registry_sources() -> dict:
    tables = [{"name": n, "description": d} for n, d in DESCRIPTIONS.items()]
    for t in tables:
        if t["name"] == "aliases":
            t["data_tests"] = [
                {
                    "mlsm.unique_combination_of_columns": {
                        "name": "registry__one_fit_per_model_segment_and_alias",
                        "arguments": {"combination_of_columns": ["model_name", "segment", "alias"]},
                    }
                }
            ]
    return {
        "version": 2,
        "sources": [
            {
                "name": "mlsm_registry",
                "description": "The model registry mlsm keeps in the warehouse: the source of "
                "truth for which fit scores in production.",
                "schema": SCHEMA,
                "tables": tables,
            }
        ],
    }

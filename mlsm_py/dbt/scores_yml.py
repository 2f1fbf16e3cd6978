"""The checks on every score (data checker 2): per score model, the long `scores` table, the
winners and the winner rule's unit test. Tests follow each fit's declared outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsm_py.registry.schema import DESCRIPTIONS, SCHEMA
from mlsm_py.spec import SummaryModel

RUN_DOCS = {
    "fit_id": "The registered fit that computed the score (mlsm_registry.fits).",
    "run_id": "The build that published the row (mlsm_registry.builds: when, as of when).",
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
            {"name": "run_id", "description": RUN_DOCS["run_id"]},
        ],
    }


def winners_yml(key: str, summaries: Sequence[SummaryModel] = ()) -> dict:
    srm = []
    for s in summaries:
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
            {
                "name": "percentile",
                "description": "Where the winning score lies among its fit's training scores, "
                "0 to 100 (mlsm_registry.score_breakpoints); NULL for a blend.",
                "data_tests": [
                    {
                        "not_null": {
                            "name": "winners__percentile__not_null",
                            "config": {"where": "winning_fit_id is not null"},
                        }
                    }
                ],
            },
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
                "description": "The winning score's percentile among its fit's training "
                "scores (0 to 100).",
            },
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
                        "name": "registry__one_fit_per_model_and_alias",
                        "arguments": {"combination_of_columns": ["model_name", "alias"]},
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


# Percentile bands of the unit test's fits: member a on [0, 1], member b on [0, 0.5], so one
# score can be higher while its percentile is lower. Dyadic values keep the arithmetic exact.
_TEST_BANDS = {
    "a": [(-1, -1e308, 0.0), (0, 0.0, 0.5), (1, 0.5, 1.0), (100, 1.0, None)],
    "b": [(-1, -1e308, 0.0), (0, 0.0, 0.125), (1, 0.125, 0.25), (2, 0.25, 0.5), (100, 0.5, None)],
}


def winner_unit_test(chosen: Sequence[tuple[SummaryModel, list]], status: dict, key: str) -> dict:
    """Given/expect rows for the winner rules: a draft on top, a challenger on top, a NULL
    score, a tie, a higher score with a lower percentile, a plain win. Expected rows come
    from `expected_winner`, the rules in Python (`train.summary`)."""
    first, cands = chosen[0]
    live = [n for n in first.models if status.get(n) == "live"]
    drafts = [n for n in first.models if status.get(n) == "draft"]
    draft = drafts[0] if drafts else "zz_draft_model"
    a = live[0]
    b = live[1] if len(live) > 1 else None
    rows: list[dict] = []
    bands: list[dict] = []

    def score(k: int, model: str, value: float | None, role: str = "champion") -> None:
        rows.append(
            {
                key: k,
                "model_name": model,
                "model_version": 1,
                "fit_id": f"{model}_{role}",
                "role": role,
                "model_status": status.get(model, "draft"),
                "score": value,
            }
        )

    score(1, a, 0.375)  # a draft model with the top score never wins
    score(1, draft, 0.9921875)
    score(1, a, 0.984375, "challenger")  # nor does a challenger
    score(2, a, None)  # a NULL score never wins
    if b:
        score(2, b, 0.125)
        score(3, b, 0.75)  # a tie goes to the model ranked first
        score(3, a, 0.75)
        score(4, a, 0.25)
        score(4, b, 0.3125)
        score(5, a, 0.625)  # a's score is higher, b's percentile is
        score(5, b, 0.25)
    by_fit = {}
    for fit_id in sorted({r["fit_id"] for r in rows}):
        scale = _TEST_BANDS["b" if b and fit_id == f"{b}_champion" else "a"]
        for band, lower, upper in scale:
            bands.append({"fit_id": fit_id, "band": band, "lower": lower, "upper": upper})
        by_fit[fit_id] = _bands(scale)
    expect = []
    for s, order in chosen:
        for k in sorted({r[key] for r in rows}):
            mine = [r for r in rows if r[key] == k]
            w = expected_winner(mine, s, [n for n, _ in order], by_fit, key)
            expect.append(
                {
                    key: k,
                    "arm": s.split.arm_of(k) if s.split is not None else None,
                    "summary_model": s.name,
                    **(
                        w
                        or dict.fromkeys(("winning_model", "winning_fit_id", "score", "percentile"))
                    ),
                }
            )
    return {
        "name": "winner_rule",
        "description": "Each summary rule as declared: ties and fallbacks follow the ranked "
        "members; NULL scores, draft models and challengers never win.",
        "model": "winners",
        "given": [
            {"input": "ref('scores')", "rows": rows},
            {"input": "ref('score_bands')", "rows": bands},
        ],
        "expect": {"rows": expect},
    }


def _bands(rows: list[tuple]) -> Any:
    from mlsm_py.train.summary import Bands

    return Bands(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows], dtype="float64"),
        np.array([np.nan if r[2] is None else r[2] for r in rows]),
    )


def expected_winner(
    rows: list[dict], summary: SummaryModel, order: Sequence[str], bands: dict, key: str
) -> dict | None:
    """The summary rule in Python on one record's score rows (see `train.summary.pick`)."""
    from mlsm_py.train.summary import pick, place

    if summary.split is not None and rows:
        order = [summary.split.arm_of(rows[0][key])]
        rule = "priority"
    else:
        rule = summary.rule
    live = {
        r["model_name"]: r
        for r in rows
        if r["model_status"] == "live" and r.get("role", "champion") == "champion"
    }
    order = [n for n in order if n in live]
    if not order:
        return None
    scores = {
        n: np.array([np.nan if live[n]["score"] is None else live[n]["score"]]) for n in order
    }
    pct = {n: place(scores[n], bands[live[n]["fit_id"]]) for n in order}
    got = pick(rule, order, scores, pct)
    if np.isnan(got.score[0]):
        return None
    if rule == "mean_score":
        return {
            "winning_model": summary.name,
            "winning_fit_id": None,
            "score": float(got.score[0]),
            "percentile": None,
        }
    winner = live[order[got.member[0]]]
    return {
        "winning_model": winner["model_name"],
        "winning_fit_id": winner["fit_id"],
        "score": winner["score"],
        "percentile": float(got.percentile[0]),
    }

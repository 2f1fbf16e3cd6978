"""The generated dbt unit tests: the summary rules on crafted score rows, and the percentile
and decile of a score on its fit's bands. Expected rows come from the same rules in Python
(`train.summary`), so the SQL and the Python evaluation cannot drift apart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsm_py.spec import SummaryModel
from mlsm_py.train.summary import place

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

    def score(k: int, model: str, value: float | None, role: str = "champion") -> None:
        fit_id = f"{model}_{role}"
        pct = None if value is None else float(place(np.array([value]), by_fit[fit_id])[0])
        rows.append(
            {
                key: k,
                "model_name": model,
                "model_version": 1,
                "fit_id": fit_id,
                "role": role,
                "model_status": status.get(model, "draft"),
                "score": value,
                "percentile": pct,
                "decile": None if pct is None else decile(pct),
            }
        )

    by_fit = {}
    for model, role in [(a, "champion"), (draft, "champion"), (a, "challenger"), (b, "champion")]:
        if model:
            fit_id = f"{model}_{role}"
            by_fit[fit_id] = _bands(_TEST_BANDS["b" if model == b and b else "a"])

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
    expect = []
    for s, order in chosen:
        for k in sorted({r[key] for r in rows}):
            mine = [r for r in rows if r[key] == k]
            w = expected_winner(mine, s, [n for n, _ in order], key)
            expect.append(
                {
                    key: k,
                    "arm": s.split.arm_of(k) if s.split is not None else None,
                    "summary_model": s.name,
                    **(
                        w
                        or dict.fromkeys(
                            ("winning_model", "winning_fit_id", "score", "percentile", "decile")
                        )
                    ),
                }
            )
    return {
        "name": "winner_rule",
        "description": "Each summary rule as declared: ties and fallbacks follow the ranked "
        "members; NULL scores, draft models and challengers never win.",
        "model": "winners",
        "given": [{"input": "ref('scores')", "rows": rows}],
        "expect": {"rows": expect},
    }


def bands_unit_test(names: Sequence[str], key: str, empty: Sequence[str] = ()) -> dict:
    """Given/expect rows for the percentile and decile of `scores`: scores below, inside, on
    and above a fit's bands, a repeated breakpoint, and a NULL score (NULL bands). Expected
    values come from `train.summary.place`, the same arithmetic in Python."""
    from mlsm_py.train.summary import Bands, place

    points = [0.0, 0.25, 0.25, *[0.25 + i / 256 for i in range(1, 97)], 0.9375, 1.0]
    assert len(points) == 101
    bands = Bands.of(points)
    fit = "the_fit"
    values = [None, -0.5, 0.0, 0.25, 0.2578125, 0.5, 0.75, 0.9375, 0.96875, 1.0, 2.0]
    given = [
        {
            "input": f"ref('{names[0]}')",
            "rows": [
                {key: i + 1, "model_name": "m", "model_version": 1, "fit_id": fit, "score": v}
                for i, v in enumerate(values)
            ],
        },
        *({"input": f"ref('{n}')", "rows": []} for n in [*names[1:], *empty]),
        {
            "input": "ref('score_bands')",
            "rows": [
                {
                    "fit_id": fit,
                    "band": int(b),
                    "lower": float(lo),
                    "upper": None if np.isnan(up) else float(up),
                }
                for b, lo, up in zip(bands.band, bands.lower, bands.upper, strict=True)
            ],
        },
    ]
    expect = []
    for i, v in enumerate(values):
        pct = None if v is None else float(place(np.array([v]), bands)[0])
        expect.append(
            {key: i + 1, "percentile": pct, "decile": None if pct is None else decile(pct)}
        )
    return {
        "name": "score_bands_rule",
        "description": "Percentile and decile of a score on its fit's stored bands: below, "
        "inside, on and above them, at a repeated breakpoint; NULL scores get NULL bands.",
        "model": "scores",
        "given": given,
        # As a full refresh: the given rows only, never the last published scores.
        "overrides": {"vars": {"mlsm_full_refresh": True}},
        "expect": {"rows": expect},
    }


def decile(percentile: float) -> int:
    """1..10 from a percentile, as `mlsm._decile_of`: [0, 10) is 1, [90, 100] is 10."""
    return 10 if percentile >= 90 else int(percentile // 10) + 1


def _bands(rows: list[tuple]) -> Any:
    from mlsm_py.train.summary import Bands

    return Bands(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows], dtype="float64"),
        np.array([np.nan if r[2] is None else r[2] for r in rows]),
    )


def expected_winner(
    rows: list[dict], summary: SummaryModel, order: Sequence[str], key: str
) -> dict | None:
    """The summary rule in Python on one record's score rows (see `train.summary.pick`)."""
    from mlsm_py.train.summary import pick

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
    pct = {
        n: np.array([np.nan if live[n]["percentile"] is None else live[n]["percentile"]])
        for n in order
    }
    got = pick(rule, order, scores, pct)
    if np.isnan(got.score[0]):
        return None
    if rule == "mean_score":
        return {
            "winning_model": summary.name,
            "winning_fit_id": None,
            "score": float(got.score[0]),
            "percentile": None,
            "decile": None,
        }
    winner = live[order[got.member[0]]]
    return {
        "winning_model": winner["model_name"],
        "winning_fit_id": winner["fit_id"],
        "score": winner["score"],
        "percentile": winner["percentile"],
        "decile": winner["decile"],
    }

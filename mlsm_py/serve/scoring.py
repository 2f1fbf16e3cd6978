"""One request's answer: every live model's champion score for each record, and each summary
model's winner, by the same rules as the warehouse's `winners` model (`mlsm.select_winner`,
`mlsm.select_arm`): NULL/NaN scores never win, ties go to the earlier candidate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlsm_py.serve.state import State, decile


def score_records(
    state: State, records: Sequence[Mapping[str, Any]], models: Sequence[str]
) -> list[dict]:
    out = []
    for r in records:
        scores = {}
        for name in models:
            got = state.models[name].score(r)
            if got is not None:
                scores[name] = got
        key = next((r.get(state.models[n].spec.key) for n in models), None)
        winners = [_winner(spec, order, scores, key) for spec, order in state.summaries]
        out.append({"key": key, "scores": list(scores.values()), "winners": winners})
    return out


def _valid(s: dict | None) -> bool:
    return s is not None and s["score"] is not None


def _winner(spec, order: list[str], scores: Mapping[str, dict], key: Any) -> dict:
    none = {
        "summary": spec.name,
        "model": None,
        "version": None,
        "fit_id": None,
        "score": None,
        "percentile": None,
        "decile": None,
        "arm": None,
        "reasons": None,
    }
    live = [scores.get(n) for n in order]
    valid = [s for s in live if _valid(s)]
    if spec.rule == "split":
        arm = spec.split.arm_of(key)
        s = scores.get(arm)
        return {**(_as_winner(spec, s) if _valid(s) else none), "arm": arm}
    if not valid:
        return none
    if spec.rule == "mean_score":
        mean = sum(s["score"] for s in valid) / len(valid)
        return {**none, "model": spec.name, "score": mean}
    if spec.rule == "highest_score":
        best = max(valid, key=lambda s: s["score"])  # max keeps the first of equals
    elif spec.rule == "highest_percentile":
        best = max(valid, key=lambda s: -1.0 if s["percentile"] is None else s["percentile"])
    else:  # priority, best_member: the first valid in candidate order
        best = valid[0]
    return _as_winner(spec, best)


def _as_winner(spec, s: dict) -> dict:
    return {
        "summary": spec.name,
        "model": s["model"],
        "version": s["version"],
        "fit_id": s["fit_id"],
        "score": s["score"],
        "percentile": s["percentile"],
        "decile": decile(s["percentile"]),
        "arm": None,
        "reasons": s.get("reasons"),  # the winning score's reason codes, as the call list has
    }

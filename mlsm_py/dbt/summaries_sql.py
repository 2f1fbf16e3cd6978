"""The summary models' SQL: the ranked candidates of each summary, the percentile bands, the
`winners` model (one macro call per summary) and each summary's call list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mlsm_py.dbt import reasons_sql
from mlsm_py.dbt.common import RUN_ID, Scored
from mlsm_py.dbt.common import header as _header
from mlsm_py.registry.store import CHAMPION
from mlsm_py.spec import METRIC_DIRECTIONS, Definitions, Model, SummaryModel


def member_order(summary: SummaryModel, champions: Mapping[str, Scored]) -> list[str]:
    """The candidates (live members with a champion) in the order ties and fallbacks follow:
    for "best_member" the best champion holdout `metric` first (a metric the fit lacks
    ranks last), else the declared priority."""
    names = [n for n in summary.models if n in champions]
    if summary.rule != "best_member":
        return names
    sign = METRIC_DIRECTIONS[summary.metric]

    def rank(n: str) -> tuple:
        v = champions[n].metrics.get(summary.metric)
        bad = v is None or v != v
        return (bad, 0.0 if bad else -sign * float(v), summary.priority[n])

    return sorted(names, key=rank)


def candidates(defs: Definitions, scored: Sequence[Scored]) -> list[tuple[SummaryModel, list]]:
    """Each summary model with its candidates [[model, rank], ...] (live models with a
    champion, see `member_order`); a summary none of whose models has a champion yet is left
    out until one has."""
    champions = {
        s.model.name: s
        for s in scored
        if s.alias == CHAMPION and s.model.status == "live" and s.segment is None
    }
    out = []
    for summary in defs.summaries:
        order = member_order(summary, champions)
        if order:
            out.append((summary, [[n, i + 1] for i, n in enumerate(order)]))
    return out


def score_bands() -> str:
    return (
        _header(
            [
                "each fit's percentile bands, from mlsm_registry.score_breakpoints: one band per "
                "distinct breakpoint (its highest percentile), plus a floor band (percentile 0)"
            ],
            "--",
        )
        + """
with

breakpoints as (

    select * from {{ source('mlsm_registry', 'score_breakpoints') }}

),

distinct_values as (

    select fit_id, max(percentile) as band, score as lower
    from breakpoints
    group by fit_id, score

),

bounded as (

    select
        fit_id,
        band,
        lower,
        lead(lower) over (partition by fit_id order by lower) as upper
    from distinct_values

),

floors as (

    select
        fit_id,
        -1 as band,
        cast(-1e308 as {{ mlsm.type_double() }}) as lower,
        min(score) as upper
    from breakpoints
    group by fit_id

),

final as (

    select fit_id, band, lower, upper from floors
    union all
    select fit_id, band, lower, upper from bounded

)

select * from final
"""
    )


def _winner_cte(s: SummaryModel, cands: list, key: str) -> str:
    if s.split is not None:
        arms = [[m, upper] for m, upper in s.split.upper_bounds()]
        call = f"mlsm.select_arm(ref('scores'), '{key}', '{s.name}', {arms}, '{s.split.salt}')"
    else:
        rule = "priority" if s.rule == "best_member" else s.rule
        call = f"mlsm.select_winner(ref('scores'), '{key}', '{s.name}', {cands}, '{rule}')"
    return f"{s.name} as (\n\n    {{{{ {call} | indent(4) }}}}\n\n)"


def _rule_text(s: SummaryModel, cands: list) -> str:
    if s.split is not None:
        shares = ", ".join(f"{m} {share:.0%}" for m, share in s.split.arms)
        return f"{s.name}: split by md5(salt:key), salt {s.split.salt!r}: {shares}"
    names = [n for n, _ in cands]
    what = {
        "best_member": f"best champion by holdout {s.metric}, falling back in order {names}",
        "priority": f"first valid score in order {names}",
        "highest_percentile": f"highest percentile on each fit's breakpoints, ties {names}",
        "highest_score": f"highest live champion score, ties {names}",
        "mean_score": f"mean of the valid live champion scores of {names}",
    }[s.rule]
    return f"{s.name}: {what}"


def call_order(summary: SummaryModel) -> str:
    """The call list's order: percentile where the rule compares on it, else the score."""
    if summary.rule in ("highest_score", "mean_score"):
        return "winners.score desc"
    return "winners.percentile desc, winners.score desc"


def winners(chosen: Sequence[tuple[SummaryModel, list]], key: str) -> str:
    parts = [_winner_cte(s, cands, key) for s, cands in chosen]
    union = "\n    union all\n".join(f"    select * from {s.name}" for s, _ in chosen)
    rules = "; ".join(_rule_text(s, c) for s, c in chosen)
    return (
        _header([f"summary models: {rules}"], "--")
        + "\nwith\n\n"
        + ",\n\n".join(parts)
        + ",\n\nunioned as (\n\n"
        + union
        + "\n\n),\n\nfinal as (\n\n    select\n"
        f"        unioned.*,\n        {RUN_ID} as run_id\n    from unioned\n\n)\n\n"
        "select * from final\n"
    )


def call_list(summary: SummaryModel, first: Model, reasons: int = 0) -> str:
    """The summary's call list; with `reasons` (the most any member's champion publishes),
    the winning score's reason codes and their text (reasons_sql.call_list_parts)."""
    cl = summary.call_list
    assert cl is not None
    key = first.key
    cols = ",\n".join(f"        features.{c}" for c in cl.columns)
    picked = ", ".join([key, *cl.columns])
    ctes, joins, why = reasons_sql.call_list_parts(key, reasons) if reasons else ("", "", [])
    body = (
        "with\n\n"
        f"winners as (\n\n    select * from {{{{ ref('winners') }}}}\n"
        f"    where summary_model = '{summary.name}'\n"
        "        and winning_model is not null\n\n),\n\n"
        f"features as (\n\n    select {picked}\n"
        f"    from {{{{ ref('{first.features}') }}}}\n\n),\n\n"
        + ctes
        + "final as (\n\n    select\n"
        f"        row_number() over (order by {call_order(summary)}, winners.{key}) as call_rank,\n"
        f"        winners.{key},\n        winners.score,\n        winners.percentile,\n"
        "        winners.decile,\n"
        "        winners.winning_model,\n"
        "        winners.winning_version,\n        winners.winning_fit_id,\n"
        + "".join(f"{line},\n" for line in why)
        + (cols + ",\n" if cols else "")
        + "        winners.run_id\n"
        f"    from winners\n    inner join features on features.{key} = winners.{key}\n"
        + (joins + "\n" if joins else "")
        + "\n)\n\nselect * from final\n"
    )
    header = _header(
        [
            f"call list of {summary.name}: winners in call order, with {first.features} columns "
            "from the same run"
        ],
        "--",
    )
    return header + "\n" + body

"""Incremental scoring (docs/decisions/0026-incremental-scoring.md): what a build scores is
what changed since the last *published* build, never since the last run, so a batch that
fails its checks is picked up again by the next one.

- `<relation>__changes`: the keys whose feature row is new, changed (by a fingerprint of the
  whole row) or gone, against `mlsm_state.<relation>__rows`, which publication rewrites.
- `score_plan`: each scorer (model and role) with the sha256 of the SQL that scores it; a
  scorer whose SQL differs from the one last published (a new fit, a promotion, a rollback)
  scores every record, the others only the changed ones.
- `scores` keeps the last published rows of every unchanged record and scorer and adds the
  fresh ones, so the published tables equal a full rebuild's (`--full-refresh`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from mlsm_py.dbt.common import Scored, sql_string
from mlsm_py.dbt.common import header as _header
from mlsm_py.dbt.common import identifier as _q

STATE = "mlsm_state"
PLAN = "score_plan"
FULL = "mlsm.full_refresh()"  # macros/macros/full_refresh.sql


def changes_name(relation: str) -> str:
    return f"{relation}__changes"


def rows_name(relation: str) -> str:
    """The state table of `relation`'s published row fingerprints."""
    return f"{relation}__rows"


def changes_model(relation: str, key: str) -> str:
    k = _q(key)
    about = [
        f"keys of {relation} whose row is new, changed or gone since the last published build "
        f"(fingerprints in {STATE}.{rows_name(relation)}); every key on --full-refresh"
    ]
    return (
        _header(about, "--")
        + f"""
with

current_rows as (

    select features.{k}, {{{{ mlsm.row_hash('features') }}}} as row_hash
    from {{{{ ref('{relation}') }}}} as features

),

published_rows as (

    select {k}, row_hash
    from {{{{ source('{STATE}', '{rows_name(relation)}') }}}}
    {{%- if {FULL} %}}
    where false
    {{%- endif %}}

),

final as (

    select
        coalesce(current_rows.{k}, published_rows.{k}) as {k},
        current_rows.row_hash,
        case
            when published_rows.{k} is null then 'new'
            when current_rows.{k} is null then 'gone'
            else 'changed'
        end as change
    from current_rows
    full outer join published_rows on published_rows.{k} = current_rows.{k}
    where current_rows.row_hash is distinct from published_rows.row_hash

)

select * from final
"""
    )


def delta_condition(s: Scored, indent: str = "        ") -> str:
    """The rows a score model scores: its relation's changed keys, or every row when its
    scorer rescores all (score_plan)."""
    m = s.model
    k = _q(m.key)
    return (
        f"(\n{indent}    {k} in (select {k} from {{{{ ref('{changes_name(m.features)}') }}}}"
        f" where {k} is not null)\n"
        f"{indent}    or (select rescore_all from {{{{ ref('{PLAN}') }}}}\n"
        f"{indent}        where model_name = {sql_string(m.name)} and role = "
        f"{sql_string(s.alias)})\n{indent})"
    )


def routing_condition(relation: str, key: str) -> str:
    """The rows a routing table holds: its relation's changed keys, or every row when any
    scorer rescores all. The score models apply their own `delta_condition` on top; the
    table only has to hold a superset, and a scorer list here would tie one model's SQL to
    the others sharing the table."""
    k = _q(key)
    return (
        f"{k} in (select {k} from {{{{ ref('{changes_name(relation)}') }}}} "
        f"where {k} is not null)\n"
        f"        or exists (select 1 from {{{{ ref('{PLAN}') }}}} where rescore_all)"
    )


def unless_idle(s: Scored, body: str) -> str:
    """`body`, or no rows when nothing is new or changed and the scorer is the published one
    (macros/macros/nothing_to_score.sql)."""
    m = s.model
    check = f"mlsm.nothing_to_score({changes_name(m.features)!r}, {m.name!r}, {s.alias!r})"
    return (
        f"{{%- if {check} %}}\n"
        "-- nothing new or changed to score: no rows, and the SQL below is not run\n"
        "select * from {{ this }} where false\n"
        "{%- else %}\n"
        f"{body}\n"
        "{%- endif %}"
    )


def scorer_sha(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def plan_model(scorers: Mapping[tuple[str, str], str]) -> str:
    """`scorers`: {(model name, role): sha256 of its generated SQL}."""
    values = ",\n".join(
        f"        ({sql_string(n)}, {sql_string(r)}, {sql_string(sha)})"
        for (n, r), sha in sorted(scorers.items())
    )
    about = [
        "each scorer of this build and whether it scores every record: when its generated SQL "
        "differs from the one the last published build ran (a new fit, a promotion, a "
        "rollback), or on --full-refresh; otherwise it scores only new and changed records"
    ]
    return (
        _header(about, "--")
        + f"""
with

current_scorers as (

    select * from (values
{values}
    ) as scorers (model_name, role, scorer_sha)

),

published_scorers as (

    select model_name, role, scorer_sha from {{{{ source('{STATE}', 'scorers') }}}}

),

final as (

    select
        current_scorers.model_name,
        current_scorers.role,
        current_scorers.scorer_sha,
        {{{{ 'true' if {FULL} else 'published_scorers.scorer_sha is null' }}}} as rescore_all
    from current_scorers
    left join published_scorers
        on published_scorers.model_name = current_scorers.model_name
        and published_scorers.role = current_scorers.role
        and published_scorers.scorer_sha = current_scorers.scorer_sha

)

select * from final
"""
    )


def kept_cte(scored: Sequence[Scored], key: str, columns: Sequence[str]) -> str:
    """The last published scores of records no scorer rescores this run (`columns` as the
    union selects them), with the run that scored them; none on a first build or a full
    refresh."""
    k = _q(key)
    by_relation: dict[str, set[str]] = {}
    for s in scored:
        by_relation.setdefault(s.model.features, set()).add(s.model.name)
    unchanged = "\n        or ".join(
        f"(previous.model_name in ({', '.join(sql_string(n) for n in sorted(names))})\n"
        f"            and not exists (\n"
        f"                select 1 from {{{{ ref('{changes_name(rel)}') }}}} as changed\n"
        f"                where changed.{k} = previous.{k}\n            ))"
        for rel, names in sorted(by_relation.items())
    )
    expected = ", ".join(repr(c.strip('"')) for c in [*columns, "run_id"])
    picked = ",\n        ".join(f"previous.{c}" for c in [*columns, "run_id"])
    # dbt sees refs inside a Jinja `if` only when it parses with a published table present.
    hints = "".join(
        f"-- depends_on: {{{{ ref('{n}') }}}}\n"
        for n in [PLAN, *(changes_name(r) for r in sorted(by_relation))]
    )
    return (
        hints + f"{{%- set previous = mlsm.previous_published('scores', [{expected}]) %}}\n\n"
        "kept as (\n\n"
        "    {%- if previous is not none %}\n"
        f"    select\n        {picked}\n"
        "    from {{ previous }} as previous\n"
        f"    inner join {{{{ ref('{PLAN}') }}}} as plan\n"
        "        on plan.model_name = previous.model_name and plan.role = previous.role\n"
        "        and not plan.rescore_all\n"
        f"    where {unchanged}\n"
        "    {%- else %}\n"
        "    select *, cast(null as varchar) as run_id from fresh where false\n"
        "    {%- endif %}\n\n"
        ")"
    )


def state_sources(relations: Sequence[str]) -> dict:
    return {
        "version": 2,
        "sources": [
            {
                "name": STATE,
                "schema": STATE,
                "description": "What the last published build scored: mlsm writes these in "
                "the publication transaction; incremental scoring compares with them.",
                "tables": [
                    {
                        "name": "scorers",
                        "description": "The sha256 of each scorer's SQL (model, role) as "
                        "last published.",
                    },
                    *(
                        {
                            "name": rows_name(r),
                            "description": f"The fingerprint of each {r} row as last published.",
                        }
                        for r in sorted(relations)
                    ),
                ],
            }
        ],
    }

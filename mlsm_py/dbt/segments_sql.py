"""The scoring model of a segmented definition: one dbt model per role that routes each
record to its segment's fit, and every other record (a level below the minimum, a level first
seen at scoring time, a NULL) to the global fit, marked `fallback`. Each fit reads only its
segment's rows of a routing table ordered by segment, so every record is scored once
(decision 0019 measures this layout against per-segment models unioned)."""

from __future__ import annotations

from collections.abc import Sequence

from mlsm_py import segments
from mlsm_py.dbt import incremental_sql, reasons_sql
from mlsm_py.dbt.common import Scored, sql_string
from mlsm_py.dbt.common import header as _header
from mlsm_py.dbt.quarantine import scorable_name
from mlsm_py.flow.compiled import RELATION
from mlsm_py.spec import Model

SEGMENT = "__mlsm_segment"  # the routing table's column: each record's segment


def routing_name(m: Model) -> str:
    """The generated table a segmented model reads: its relation ordered by segment."""
    return f"{m.features}__by_{'__'.join(m.segments)}"


def routing_model(m: Model, held: frozenset[str]) -> str:
    """The feature relation's rows to score this build (`incremental_sql.routing_condition`)
    with each record's segment as a column, ordered by it. A fit's
    `segment = 'de'` filter then reads only the row groups holding 'de' (DuckDB prunes them
    by their min/max); on the relation in load order every branch pays for every batch
    (decision 0019: 2.4x on LightGBM). Shared by every definition with the same relation and
    segment columns."""
    name = scorable_name(m.features) if m.features in held else m.features
    about = [
        f"{name}'s new and changed rows (every row when a scorer rescores all) with each "
        f"record's segment by {segments.describe(m)} ({SEGMENT}), ordered by it: what the "
        "segmented score models read"
    ]
    return (
        _header(about, "--")
        + "\nwith\n\nrelation as (\n\n"
        + f"    select * from {{{{ ref('{name}') }}}}\n\n),\n\nfinal as (\n\n"
        + f"    select *, {segments.sql(m)} as {SEGMENT}\n    from relation\n"
        + f"    where {incremental_sql.routing_condition(m.features, m.key)}\n\n)\n\n"
        + f'select * from final\norder by {SEGMENT}, "{m.key}"\n'
    )


def _rows(s: Scored, condition: str) -> str:
    m = s.model
    where = f"({m.population})\n        and {condition}" if m.population else condition
    where += "\n        and " + incremental_sql.delta_condition(s, "        ")
    return (
        f"(\n        select * from {{{{ ref('{routing_name(m)}') }}}}\n"
        f"        where {where}\n    ) as segment_rows"
    )


def segmented_model(group: Sequence[Scored]) -> str:
    """One role of a segmented model: the segment fits of `group` and its global fit, over
    the routing table (`routing_model`)."""
    m = group[0].model
    alias = group[0].alias
    fits = sorted((s for s in group if s.segment is not None), key=lambda s: str(s.segment))
    glob = [s for s in group if s.segment is None]
    about = [
        f"model: {m.name} v{m.version} ({m.status}), {alias}; reads {m.features}; key {m.key}"
        + (f"; population: {m.population}" if m.population else ""),
        f"segmented by {segments.describe(m)}: {len(fits)} segment fit(s)"
        + (
            ", the global fit scores every other record (fallback)"
            if glob
            else "; no global fit for this role: other records get no score from it"
        ),
    ]
    for s in [*fits, *glob]:
        f = s.fit
        where = f"segment {s.segment}" if s.segment is not None else "fallback (global)"
        about.append(
            f"  {where}: fit {f['fit_id']}, {f['train_rows']:,} rows before "
            f"{f['train_before']:%Y-%m-%d}, body sha256 {f['dbt_sql_sha256'][:16]}"
        )
    dialect = group[0].fit.get("dialect") or "duckdb"
    about.append(f"estimator: {group[0].fit['estimator']}; route: sql, {dialect} dialect")
    # Each fit's body goes in as registered, never re-indented: a string literal in it may
    # hold a line break. A union of subqueries, not a CTE per segment: DuckDB binds CTEs that
    # each hold a whole fit superlinearly (21 LightGBM fits: 13.6 s to plan, against 2.7 s;
    # decision 0019).
    selects = []
    levels = [sql_string(s.segment) for s in fits]
    upto = reasons_sql.most(group)

    def picked(s: Scored, prefix: str = "") -> str:
        # Every part selects the same columns: a fit without reason codes (a segment kept
        # from before they were declared) gets NULL ones.
        if not upto:
            return f"{prefix}*"
        cols = [f'"{m.key}"', "fit_id", "model_name", "model_version", "score"]
        cols = [f"{prefix}{c}" for c in cols]
        return ", ".join([*cols, *reasons_sql.select_list(reasons_sql.k_of(s), upto, prefix)])

    for i, s in enumerate(fits, 1):
        body = s.fit["dbt_sql"].replace(RELATION, _rows(s, f"{SEGMENT} = {levels[i - 1]}"))
        selects.append(
            f"select {picked(s)}, {levels[i - 1]} as segment, false as fallback from (\n\n"
            f"{body}\n\n) as segment_{i}"
        )
    if glob:
        # Without segment fits the global fit scores every record, NULL level or not.
        others = (
            f"{SEGMENT} is null or {SEGMENT} not in ({', '.join(levels)})" if levels else "true"
        )
        body = glob[0].fit["dbt_sql"].replace(RELATION, _rows(glob[0], f"({others})"))
        # The fit's output holds the key and the score only; the record's level comes from
        # the routing table, so the published row says which unseen level (or NULL) fell back.
        selects.append(
            f"select {picked(glob[0], 'fallback_scores.')}, levels.segment, true as fallback "
            "from (\n\n"
            f"{body}\n\n) as fallback_scores\n"
            f'left join (select "{m.key}", {SEGMENT} as segment from '
            f"{{{{ ref('{routing_name(m)}') }}}}) as levels\n"
            f'    on levels."{m.key}" = fallback_scores."{m.key}"'
        )
    body = "\n\nunion all\n\n".join(selects)
    return _header(about, "--") + "\n" + incremental_sql.unless_idle(group[0], body) + "\n"

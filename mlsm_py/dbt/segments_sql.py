"""The scoring model of a segmented definition: one dbt model per role that routes each
record to its segment's fit, and every other record (a level below the minimum, a level first
seen at scoring time, a NULL) to the global fit, marked `fallback`. Each fit reads only its
segment's rows, so every record is scored once (decision 0019 measures this layout against
per-segment models unioned)."""

from __future__ import annotations

from collections.abc import Sequence

from mlsm_py import segments
from mlsm_py.dbt.common import Scored, sql_string
from mlsm_py.dbt.common import header as _header
from mlsm_py.dbt.quarantine import scorable_name
from mlsm_py.flow.compiled import RELATION
from mlsm_py.spec import Model


def _rows(m: Model, held: frozenset[str], condition: str) -> str:
    name = scorable_name(m.features) if m.features in held else m.features
    where = f"({m.population})\n        and {condition}" if m.population else condition
    return (
        f"(\n        select * from {{{{ ref('{name}') }}}}\n"
        f"        where {where}\n    ) as segment_rows"
    )


def _indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + ln if ln else ln for ln in text.splitlines())


def segmented_model(group: Sequence[Scored], held: frozenset[str]) -> str:
    """One role of a segmented model: the segment fits of `group` and its global fit."""
    m = group[0].model
    alias = group[0].alias
    seg = segments.sql(m)
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
    about.append(f"estimator: {group[0].fit['estimator']}; route: sql")
    ctes, selects = [], []
    levels = [sql_string(s.segment) for s in fits]
    for i, s in enumerate(fits, 1):
        body = s.fit["dbt_sql"].replace(RELATION, _rows(m, held, f"{seg} = {levels[i - 1]}"))
        ctes.append(f"segment_{i} as (\n\n{_indent(body)}\n\n)")
        selects.append(
            f"    select *, {levels[i - 1]} as segment, false as fallback from segment_{i}"
        )
    if glob:
        others = f"({seg}) is null" + (
            f" or ({seg}) not in ({', '.join(levels)})" if levels else ""
        )
        body = glob[0].fit["dbt_sql"].replace(RELATION, _rows(m, held, f"({others})"))
        ctes.append(f"fallback_scores as (\n\n{_indent(body)}\n\n)")
        # The fit's output holds the key and the score only; the record's level comes from
        # the relation, so the published row says which unseen level (or NULL) fell back.
        name = scorable_name(m.features) if m.features in held else m.features
        ctes.append(
            "fallback_levels as (\n\n"
            f"    select \"{m.key}\", {seg} as segment from {{{{ ref('{name}') }}}}\n\n)"
        )
        selects.append(
            "    select fallback_scores.*, fallback_levels.segment, true as fallback\n"
            "    from fallback_scores\n"
            f'    left join fallback_levels on fallback_levels."{m.key}" = '
            f'fallback_scores."{m.key}"'
        )
    routed = "\n    union all\n".join(selects)
    return (
        _header(about, "--")
        + "\nwith\n\n"
        + ",\n\n".join(ctes)
        + ",\n\nrouted as (\n\n"
        + routed
        + "\n\n)\n\nselect * from routed\n"
    )

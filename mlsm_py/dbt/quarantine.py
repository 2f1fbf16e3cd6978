"""Quarantine, declared per field: rows breaking a quarantine rule are listed (key, column,
rule, value) in `quarantine__<relation>`, and scoring reads `scorable__<relation>`, the
relation without them. A share test per field stops publication when the quarantine holds back
more than the declared limit. Relations without a quarantine rule are read directly."""

from __future__ import annotations

from collections.abc import Sequence

from mlsm_py.contracts import Rule, _num, rules_of
from mlsm_py.dbt.common import sql_string
from mlsm_py.spec import Field, Model

DOUBLE = "{{ mlsm.type_double() }}"
STRING = "{{ dbt.type_string() }}"


def quarantine_name(relation: str) -> str:
    return f"quarantine__{relation}"


def scorable_name(relation: str) -> str:
    return f"scorable__{relation}"


def relations(models: Sequence[Model]) -> dict[str, tuple[str, list[Field]]]:
    """{relation: (key, its fields)} for the feature relations with a quarantine rule."""
    out: dict[str, tuple[str, dict[str, Field]]] = {}
    for m in models:
        key, fields = out.setdefault(m.features, (m.key, {}))
        for f in m.fields:
            fields.setdefault(f.name, f)
    return {
        rel: (key, list(fields.values()))
        for rel, (key, fields) in sorted(out.items())
        if any(f.quarantines for f in fields.values())
    }


def condition(r: Rule) -> str:
    """The rows breaking `r`, in SQL (the same rows as `contracts.broken` in Python)."""
    col = r.field.name
    nan = f"cast('NaN' as {DOUBLE})"
    if r.kind == "not_null":
        return f"{col} is null"
    if r.kind == "finite":
        return f"{col} in ({nan}, cast('Infinity' as {DOUBLE}), cast('-Infinity' as {DOUBLE}))"
    if r.kind == "levels":
        levels = ", ".join(sql_string(v) for v in r.field.levels or ())
        return f"{col} is not null and cast({col} as {STRING}) not in ({levels})"
    parts = [f"{col} = {nan}"]
    if r.field.min is not None:
        parts.append(f"{col} < {_num(r.field.min)}")
    if r.field.max is not None:
        parts.append(f"{col} > {_num(r.field.max)}")
    return f"{col} is not null and ({' or '.join(parts)})"


def quarantine_sql(relation: str, key: str, fields: Sequence[Field], header: str, run_id: str):
    rules = [r for f in fields for r in rules_of(f) if r.action == "quarantine"]
    selects = "\n\n    union all\n\n".join(
        f"    select\n        {key},\n        {sql_string(r.field.name)} as column_name,\n"
        f"        {sql_string(r.words)} as rule,\n"
        f"        cast({r.field.name} as {STRING}) as value\n"
        f"    from features\n    where {condition(r)}"
        for r in rules
    )
    return (
        header
        + f"\nwith\n\nfeatures as (\n\n    select * from {{{{ ref('{relation}') }}}}\n\n),\n\n"
        f"broken as (\n\n{selects}\n\n),\n\n"
        f"final as (\n\n    select\n        broken.*,\n        {run_id} as run_id\n"
        "    from broken\n\n)\n\nselect * from final\n"
    )


def scorable_sql(relation: str, key: str, header: str) -> str:
    return (
        header + "\n{{ config(materialized='view') }}\n\n"
        f"with\n\nfeatures as (\n\n    select * from {{{{ ref('{relation}') }}}}\n\n),\n\n"
        f"held as (\n\n    select distinct {key} from {{{{ ref('{quarantine_name(relation)}') }}}}"
        "\n\n),\n\n"
        "final as (\n\n    select features.*\n    from features\n"
        f"    where features.{key} not in (select {key} from held)\n\n)\n\n"
        "select * from final\n"
    )


def yml(relation: str, key: str, fields: Sequence[Field]) -> list[dict]:
    tests = []
    for f in fields:
        if f.quarantines:
            limit = f.quarantine_limit
            tests.append(
                {
                    "mlsm.quarantine_share": {
                        "name": f"{quarantine_name(relation)}__{f.name}__share",
                        "arguments": {
                            "relation": f"ref('{relation}')",
                            "key": key,
                            "column": f.name,
                            "max_share": limit,
                        },
                    }
                }
            )
    return [
        {
            "name": quarantine_name(relation),
            "description": f"Rows of {relation} held back from scoring by a quarantine rule: "
            "one row per record and broken rule. Publication goes on while each field's "
            "share stays within its declared limit.",
            "data_tests": tests,
            "columns": [
                {"name": key, "description": "Record key."},
                {"name": "column_name", "description": "The column whose rule the row breaks."},
                {"name": "rule", "description": "The rule, in words."},
                {"name": "value", "description": "The offending value, as text (NULL: missing)."},
                {"name": "run_id", "description": "The build that found it."},
            ],
        },
        {
            "name": scorable_name(relation),
            "description": f"{relation} without the quarantined rows: what the models score.",
        },
    ]

"""The feature relations' field contracts as dbt data tests (data checker 1)."""

from __future__ import annotations

from collections.abc import Sequence

from mlsm_py.contracts import _num
from mlsm_py.spec import Field, Model


def _warn_if(tests: list, quarantined: bool) -> list:
    """A quarantine rule's check warns (the quarantine table holds the rows); others error."""
    if quarantined:
        for t in tests:
            spec = next(iter(t.values()))
            spec["config"] = {"severity": "warn"}
    return tests


def field_tests(relation: str, f: Field) -> list:
    """The field's checks; those of quarantine rules only warn (the share test blocks)."""
    held = f.severity == "quarantine"
    tests = _warn_if(_value_tests(relation, f), held)
    if f.levels is not None and f.levels_action != "pass":
        levels = {
            "accepted_values": {
                "name": f"{relation}__{f.name}__accepted_levels",
                "arguments": {"values": list(f.levels), "quote": True},
            }
        }
        tests += _warn_if([levels], f.levels_action == "quarantine")
    return tests


def _value_tests(relation: str, f: Field) -> list:
    tests: list = []
    if not f.nullable:
        tests.append({"not_null": {"name": f"{relation}__{f.name}__not_null"}})
    if f.min is not None or f.max is not None:
        args = {}
        rule = []
        if f.min is not None:
            args["min_value"] = _num(f.min)
            rule.append(f"min_{_num(f.min)}")
        if f.max is not None:
            args["max_value"] = _num(f.max)
            rule.append(f"max_{_num(f.max)}")
        name = f"{relation}__{f.name}__range_{'_'.join(rule)}".replace("-", "minus").replace(
            ".", "p"
        )
        tests.append({"mlsm.accepted_range": {"name": name, "arguments": args}})
    if f.type == "double":
        # +inf passes a one-sided range and NaN compares oddly; a model then scores NULL.
        tests.append({"mlsm.finite": {"name": f"{relation}__{f.name}__finite"}})
    return tests


def _relation_tests(relation: str, m: Model) -> list:
    change = m.checks.volume_change
    if change is None:
        return []
    return [
        {
            "mlsm.volume_change": {
                "name": f"{relation}__volume_change",
                "arguments": {"relation_name": relation, "max_change": change},
            }
        }
    ]


def contracts(models: Sequence[Model]) -> dict[str, tuple[str, dict]]:
    """{relation: (who declared it, yml document)}: one document per feature relation."""
    by_rel: dict[str, list[Model]] = {}
    for m in models:
        by_rel.setdefault(m.features, []).append(m)
    out = {}
    for relation, ms in sorted(by_rel.items()):
        fields: dict[str, Field] = {}
        for m in ms:
            for f in m.fields:
                fields.setdefault(f.name, f)
        time_col = ms[0].split.column
        key = ms[0].key
        relation_tests = _relation_tests(relation, ms[0])
        columns = [
            {
                "name": key,
                "description": "Record key.",
                "data_tests": [
                    {"unique": {"name": f"{relation}__{key}__unique"}},
                    {"not_null": {"name": f"{relation}__{key}__not_null"}},
                ],
            }
        ]
        for f in fields.values():
            col: dict = {"name": f.name, "description": f.description or f"{f.type} input"}
            tests = field_tests(relation, f)
            if tests:
                col["data_tests"] = tests
            columns.append(col)
        fresh = ms[0].checks.freshness_hours
        if fresh is not None:
            columns.append(
                {
                    "name": time_col,
                    "description": "When the record was created (the split column).",
                    "data_tests": [
                        {
                            "mlsm.freshness": {
                                "name": f"{relation}__{time_col}__fresh",
                                "arguments": {"warn_hours": fresh[0], "error_hours": fresh[1]},
                                "config": {"warn_if": ">= 1", "error_if": ">= 2"},
                            }
                        }
                    ],
                }
            )
        doc = {
            "version": 2,
            "models": [
                {
                    "name": relation,
                    "description": "Model inputs, one row per record. The checks below are the "
                    "field contracts declared in the model definitions; scoring runs only if "
                    "they pass.",
                    "columns": columns,
                    **({"data_tests": relation_tests} if relation_tests else {}),
                }
            ],
        }
        users = ", ".join(sorted(f"{m.name} v{m.version}" for m in ms))
        out[relation] = (users, doc)
    return out

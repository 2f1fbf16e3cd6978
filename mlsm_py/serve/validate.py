"""A request's records against the models' `fields` contracts, as the warehouse checks rows:
the same rules (`contracts.rules_of`), one error per broken rule naming the record, the field,
the value and the rule. A record that would not be scored in the warehouse (an error rule or a
quarantine rule broken) is refused, not scored.

JSON `null` is a missing value, exactly as a warehouse NULL: it takes the model's missing-value
route. A field left out of a record is missing too, unless the field is not nullable: then the
record is refused ("required")."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlsm_py.contracts import rules_of
from mlsm_py.spec import Field

_rules = functools.lru_cache(maxsize=None)(rules_of)  # fields are frozen: rules per field once


@dataclass(frozen=True)
class Problem:
    record: int
    field: str
    value: Any
    rule: str

    def to_dict(self) -> dict:
        shown = self.value if _jsonable(self.value) else repr(self.value)
        return {
            "record": self.record,
            "field": self.field,
            "value": shown,
            "rule": self.rule,
            "msg": f"record {self.record}: {self.field} = {shown!r} breaks the rule: {self.rule}",
        }


def _jsonable(v: Any) -> bool:
    return (
        v is None or isinstance(v, str | bool | int) or (isinstance(v, float) and math.isfinite(v))
    )


_ABSENT = object()


def check_record(i: int, record: Any, fields: Sequence[Field], key: str) -> list[Problem]:
    if not isinstance(record, Mapping):
        return [Problem(i, "(record)", type(record).__name__, "a record is a JSON object")]
    out: list[Problem] = []
    if record.get(key) is None:
        out.append(Problem(i, key, record.get(key), f"{key} (the record's key) is required"))
    for f in fields:
        v = record.get(f.name, _ABSENT)
        if v is _ABSENT:
            if not f.nullable:
                out.append(Problem(i, f.name, None, f"{f.name} is required"))
            continue
        problem = _check_value(f, v)
        if problem:
            out.append(Problem(i, f.name, v, problem))
    return out


def _check_value(f: Field, v: Any) -> str | None:
    """The rule `v` breaks, or None."""
    if v is None:
        return None if f.nullable else f"{f.name} must not be NULL"
    if f.type == "category":
        if not isinstance(v, str):
            return f"{f.name} is a category: a JSON string or null"
        if f.levels is not None and f.levels_action != "pass" and v not in f.levels:
            return f"{f.name} must be one of: {', '.join(f.levels)}"
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"{f.name} is a number: a JSON number or null"
    if f.type == "integer" and not float(v).is_integer():
        return f"{f.name} must be an integer"
    for rule in _rules(f):
        if rule.kind == "finite" and not math.isfinite(float(v)):
            return rule.words
        low = f.min is not None and v < f.min
        if rule.kind == "range" and (low or (f.max is not None and v > f.max)):
            return rule.words
    return None


def check_records(
    records: Sequence[Any], models: Sequence[tuple[str, Sequence[Field]]]
) -> list[Problem]:
    """Every problem of every record, against every model scoring it (a field several models
    declare alike is reported once)."""
    out: list[Problem] = []
    for i, r in enumerate(records):
        seen: set[tuple[str, str]] = set()
        for key, fields in models:
            for p in check_record(i, r, fields, key):
                if (p.field, p.rule) not in seen:
                    seen.add((p.field, p.rule))
                    out.append(p)
    return out

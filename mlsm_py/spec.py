"""Model definitions: parameters only. Fitting and checking happen where the work happens."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mlsm_py.errors import SpecError

NAME_RULE = re.compile(r"[a-z][a-z0-9_]*")
STATUSES = ("draft", "live")
SCORING_PATHS = ("auto", "sql", "python")
FIELD_TYPES = ("double", "integer", "category")


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        raise SpecError(
            f"{kind} name {name!r} is invalid: names must match [a-z][a-z0-9_]* "
            "(lower-case letter first, then lower-case letters, digits or underscores)"
        )
    return name


@dataclass(frozen=True)
class Field:
    """Contract for one input column: type, nullability and the values it may take."""

    name: str
    type: Literal["double", "integer", "category"]
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    levels: tuple[str, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if self.type not in FIELD_TYPES:
            raise SpecError(
                f"field {self.name!r}: type {self.type!r} is not one of {', '.join(FIELD_TYPES)}"
            )
        if self.type == "category":
            if self.min is not None or self.max is not None:
                raise SpecError(f"field {self.name!r}: a category field takes levels, not min/max")
            if self.levels is not None:
                object.__setattr__(self, "levels", tuple(str(v) for v in self.levels))
        elif self.levels is not None:
            raise SpecError(f"field {self.name!r}: levels apply to category fields only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SpecError(f"field {self.name!r}: min {self.min} is greater than max {self.max}")


@dataclass(frozen=True)
class TimeSplit:
    """Train on older rows, evaluate on the newest `holdout_days`, leaving `gap_days` between."""

    column: str
    holdout_days: int = 60
    gap_days: int = 14

    def __post_init__(self) -> None:
        if self.holdout_days <= 0 or self.gap_days < 0:
            raise SpecError(
                f"time split on {self.column!r}: holdout_days must be > 0 and gap_days >= 0 "
                f"(got {self.holdout_days}, {self.gap_days})"
            )


@dataclass(frozen=True)
class Model:
    """A versioned scoring model: what it reads, what it predicts, and the estimator to fit."""

    name: str
    version: int
    status: Literal["draft", "live"]
    features: str
    key: str
    target: str
    fields: tuple[Field, ...]
    estimator: Any
    split: TimeSplit
    description: str = ""
    # "auto": SQL when it can express the fit and is expected to be faster, else a dbt Python
    # model; "sql" / "python" force one path ("sql" fails if SQL cannot express the estimator).
    scoring_path: Literal["auto", "sql", "python"] = "auto"

    def __post_init__(self) -> None:
        check_name("model", self.name)
        if self.scoring_path not in SCORING_PATHS:
            raise SpecError(
                f"model {self.name!r}: scoring_path {self.scoring_path!r} is not one of "
                f"{', '.join(SCORING_PATHS)}"
            )
        check_name("feature relation", self.features)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise SpecError(f"model {self.name!r}: version must be a positive integer")
        if self.status not in STATUSES:
            raise SpecError(
                f"model {self.name!r}: status {self.status!r} is not one of {', '.join(STATUSES)}"
            )
        object.__setattr__(self, "fields", tuple(self.fields))
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"model {self.name!r}: fields declared twice: {', '.join(dupes)}")
        for col in (self.key, self.target):
            if col in names:
                raise SpecError(f"model {self.name!r}: {col!r} is the key or target, not a field")

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


@dataclass(frozen=True)
class SummaryModel:
    """Picks one winner per record among its input models.

    Rule: the highest non-NULL score among live input models wins; ties go to the model listed
    first (`models` is the declared priority). Draft models are scored but never win.
    """

    name: str
    models: tuple[str, ...]
    rule: Literal["highest_score"] = "highest_score"
    description: str = ""
    priority: dict[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_name("summary model", self.name)
        models = tuple(self.models)
        if not models:
            raise SpecError(f"summary model {self.name!r}: needs at least one input model")
        for m in models:
            check_name("model", m)
        if len(set(models)) != len(models):
            raise SpecError(f"summary model {self.name!r}: an input model is listed twice")
        if self.rule != "highest_score":
            raise SpecError(
                f"summary model {self.name!r}: rule {self.rule!r} is unknown; "
                "supported: highest_score"
            )
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "priority", {m: i + 1 for i, m in enumerate(models)})


def check_project(models: Sequence[Model], summaries: Sequence[SummaryModel]) -> None:
    """Cross-definition rules: unique names, summaries naming known models, shared contracts."""
    seen: dict[str, Model] = {}
    for m in models:
        if m.name in seen:
            raise SpecError(f"model {m.name!r} is defined twice; bump `version` instead")
        seen[m.name] = m
    for s in summaries:
        if s.name in seen:
            raise SpecError(f"summary model {s.name!r} has the name of a model")
        unknown = [n for n in s.models if n not in seen]
        if unknown:
            raise SpecError(
                f"summary model {s.name!r} names unknown models: {', '.join(unknown)}; "
                f"defined: {', '.join(sorted(seen))}"
            )
        if not any(seen[n].status == "live" for n in s.models):
            raise SpecError(f"summary model {s.name!r} has no live input model")
    # Models reading the same feature relation must agree on each column's contract, because the
    # contract becomes one set of dbt tests on that relation.
    by_col: dict[tuple[str, str], tuple[Field, str]] = {}
    for m in models:
        for f in m.fields:
            prev = by_col.setdefault((m.features, f.name), (f, m.name))
            if prev[0] != f:
                raise SpecError(
                    f"field {f.name!r} of {m.features!r} is declared differently by models "
                    f"{prev[1]!r} and {m.name!r}"
                )

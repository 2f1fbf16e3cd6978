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


def check_condition(what: str, text: str) -> str:
    """A SQL condition that stays one boolean expression: parsed, and free of text dbt's Jinja
    or a second statement could act on."""
    import sqlglot

    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"{what} must be a non-empty SQL condition")
    if any(t in text for t in ("{", "}", ";", "--", "/*")):
        raise SpecError(f"{what} {text!r}: braces, ';' and comments are not allowed")
    try:
        parsed = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as e:
        first = str(e).splitlines()[0] if str(e) else "parse error"
        raise SpecError(f"{what} {text!r} is not a SQL condition ({first})") from None
    if isinstance(parsed, sqlglot.exp.Query):
        raise SpecError(f"{what} {text!r} is a query, not a condition")
    return text


def check_levels(what: str, levels: object) -> tuple[float, float]:
    """A (warn at, error at) pair of thresholds, warn <= error."""
    try:
        warn, error = (float(v) for v in levels)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise SpecError(f"{what} must be (warn at, error at), e.g. (0.1, 0.25)") from None
    if not 0 <= warn <= error:
        raise SpecError(f"{what}: warn at {warn:g} must be >= 0 and <= error at {error:g}")
    return warn, error


@dataclass(frozen=True)
class Checks:
    """The checks a model's build runs besides the field contracts (data checkers 1 and 2).

    volume_change: the feature relation's row count may differ from the previous published
    build's by at most this share (0.5: half); None: off. freshness_hours: (warn, error) age in
    hours of the newest split-column value against now; None: off (for data loaded by hand).
    score_drift: (warn, error) PSI of the model's score deciles against its holdout's.
    score_mean: (low, high) band the mean score must lie in; None: off.
    drift_min_rows: below this many records scored, input and score drift are reported
    ('too_few_rows') but never warn or fail: PSI on a few hundred records is mostly noise
    (an empty decile alone adds ~0.7).
    """

    volume_change: float | None = 0.5
    freshness_hours: tuple[float, float] | None = None
    score_drift: tuple[float, float] = (0.1, 0.25)
    score_mean: tuple[float, float] | None = None
    drift_min_rows: int = 1000

    def __post_init__(self) -> None:
        if self.volume_change is not None and not self.volume_change > 0:
            raise SpecError(f"checks: volume_change {self.volume_change!r} must be > 0")
        if self.freshness_hours is not None:
            object.__setattr__(
                self,
                "freshness_hours",
                check_levels("checks: freshness_hours", self.freshness_hours),
            )
        object.__setattr__(
            self, "score_drift", check_levels("checks: score_drift", self.score_drift)
        )
        if self.score_mean is not None:
            low, high = (float(v) for v in self.score_mean)
            if low > high:
                raise SpecError(f"checks: score_mean low {low:g} is above high {high:g}")
            object.__setattr__(self, "score_mean", (low, high))


@dataclass(frozen=True)
class Field:
    """Contract for one input column: type, nullability and the values it may take.

    `severity` says what a row breaking the contract does: "error" (the default) stops the
    build before anything is published; "quarantine" keeps the row out of scoring, lists it
    in the quarantine table with the rule and the value, and lets publication go on while
    the quarantined share of the relation stays at or under `quarantine_limit` (0.01 = 1%).
    `unknown_levels` says the same of a category level outside `levels`: "block",
    "quarantine" or "pass" (score it: fits an encoder with handle_unknown="ignore"); by
    default it follows `severity`.
    """

    name: str
    type: Literal["double", "integer", "category"]
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    levels: tuple[str, ...] | None = None
    description: str = ""
    severity: Literal["error", "quarantine"] = "error"
    unknown_levels: Literal["block", "quarantine", "pass"] | None = None
    quarantine_limit: float | None = None
    # Input drift against the champion's training data: (warn at, error at) PSI; None: off.
    drift: tuple[float, float] | None = (0.1, 0.25)

    @property
    def levels_action(self) -> str:
        """What an unknown level does: block, quarantine or pass."""
        if self.unknown_levels is not None:
            return self.unknown_levels
        return "quarantine" if self.severity == "quarantine" else "block"

    @property
    def quarantines(self) -> bool:
        return self.severity == "quarantine" or (
            self.levels is not None and self.levels_action == "quarantine"
        )

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if self.drift is not None:
            object.__setattr__(
                self, "drift", check_levels(f"field {self.name!r}: drift", self.drift)
            )
        if self.severity not in ("error", "quarantine"):
            raise SpecError(
                f"field {self.name!r}: severity {self.severity!r} is not 'error' or 'quarantine'"
            )
        if self.unknown_levels not in (None, "block", "quarantine", "pass"):
            raise SpecError(
                f"field {self.name!r}: unknown_levels {self.unknown_levels!r} is not 'block', "
                "'quarantine' or 'pass'"
            )
        if self.unknown_levels is not None and self.levels is None:
            raise SpecError(f"field {self.name!r}: unknown_levels needs declared levels")
        if self.quarantines:
            limit = self.quarantine_limit
            if limit is None or not 0 < limit < 1:
                raise SpecError(
                    f"field {self.name!r}: a quarantine needs quarantine_limit, the largest "
                    f"share of rows it may hold back, between 0 and 1 (got {limit!r})"
                )
        elif self.quarantine_limit is not None:
            raise SpecError(
                f"field {self.name!r}: quarantine_limit applies only with severity='quarantine' "
                "or unknown_levels='quarantine'"
            )
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
    """Train on older rows, evaluate on the newest matured `holdout_days`, `gap_days` between.

    A row's label is known (matured) once `label_ready_after_days` have passed since its
    `column` time, counted back from the newest row (the data's as-of time). Training and the
    holdout read matured rows only, so leads still waiting for their outcome never count as
    negatives.

    `validation_days` > 0 keeps the newest training days apart as a validation window: a
    LightGBM or XGBoost model stops adding trees when `early_stopping_rounds` rounds bring no
    gain on it; other estimators do not see those rows at all.
    """

    column: str
    holdout_days: int = 60
    gap_days: int = 14
    label_ready_after_days: int = 0
    validation_days: int = 0
    early_stopping_rounds: int = 20

    def __post_init__(self) -> None:
        if self.validation_days < 0 or self.early_stopping_rounds < 1:
            raise SpecError(
                f"time split on {self.column!r}: validation_days must be >= 0 and "
                f"early_stopping_rounds >= 1 (got {self.validation_days}, "
                f"{self.early_stopping_rounds})"
            )
        if self.holdout_days <= 0 or self.gap_days < 0 or self.label_ready_after_days < 0:
            raise SpecError(
                f"time split on {self.column!r}: holdout_days must be > 0, gap_days and "
                f"label_ready_after_days >= 0 (got {self.holdout_days}, {self.gap_days}, "
                f"{self.label_ready_after_days})"
            )


# Metrics a promotion rule may name, with the direction in which they improve.
METRIC_DIRECTIONS = {
    "roc_auc": 1,
    "pr_auc": 1,
    "top_decile_capture": 1,
    **{f"capture_at_{k}": 1 for k in (1, 5, 10, 20)},
    **{f"lift_at_{k}": 1 for k in (1, 5, 10, 20)},
    "log_loss": -1,
    "brier": -1,
    "rmse": -1,
    "mae": -1,
    "r2": 1,
}


@dataclass(frozen=True)
class Promotion:
    """When a challenger replaces the champion, both scored on the same newest matured rows.

    Promote when the challenger beats the champion on `metric` by more than `min_gain` (in the
    metric's own direction: higher AUC, lower log loss) and no guard is broken: each guard
    `(metric, max_loss)` allows the challenger to be worse than the champion by at most
    `max_loss` on that metric (`("top_decile_capture", 0.01)`: at most one point of capture
    lost). The default promotes any strictly better ROC AUC.
    """

    metric: str = "roc_auc"
    min_gain: float = 0.0
    guards: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "guards", tuple((str(m), float(t)) for m, t in self.guards))
        for name in (self.metric, *(m for m, _ in self.guards)):
            if name not in METRIC_DIRECTIONS:
                raise SpecError(
                    f"promotion rule: metric {name!r} is unknown; "
                    f"known: {', '.join(METRIC_DIRECTIONS)}"
                )
        for m, t in self.guards:
            if t < 0:
                raise SpecError(
                    f"promotion guard {m!r}: max_loss {t} must be >= 0 (the most the "
                    "challenger may lose on it)"
                )

    def describe(self) -> str:
        text = f"{self.metric} gain > {self.min_gain:g}"
        for m, t in self.guards:
            text += f"; {m} loss <= {t:g}"
        return text


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
    # Which records are scored: a SQL condition on the feature relation (e.g. open leads only,
    # "converted is null"), so the call list never ranks leads that already have an outcome.
    population: str | None = None
    promotion: Promotion = field(default_factory=Promotion)
    checks: Checks = field(default_factory=Checks)
    # One fit per level of these columns (declared category or integer fields) besides a
    # global fit of the same definition, the fallback: it scores levels with fewer than
    # `segment_min_rows` training rows or `segment_min_positives` positives, levels first
    # seen at scoring time, and NULLs.
    segment_by: str | tuple[str, ...] | None = None
    segment_min_rows: int = 500
    segment_min_positives: int = 20
    # Reason codes: the `reasons` inputs that moved each record's score most, published as
    # reason_1..k (input column, signed contribution on the margin scale), computed in the
    # scoring SQL and by the API (decision 0021). 0: none. Four is the adverse-action custom.
    reasons: int = 0

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
        if self.population is not None:
            check_condition(f"model {self.name!r}: population", self.population)
        if not isinstance(self.promotion, Promotion):
            raise SpecError(f"model {self.name!r}: promotion must be a mlsm_py.Promotion")
        self._check_segments()
        n = len(self.fields)
        if not isinstance(self.reasons, int) or isinstance(self.reasons, bool):
            raise SpecError(
                f"model {self.name!r}: reasons must be an integer (got {self.reasons!r})"
            )
        if not 0 <= self.reasons <= n:
            raise SpecError(
                f"model {self.name!r}: reasons={self.reasons}; it must be between 0 and the "
                f"number of fields ({n})"
            )
        if self.reasons and self.scoring_path == "python":
            raise SpecError(
                f"model {self.name!r}: reason codes are computed in SQL; scoring_path='python' "
                "cannot have them (use 'auto' or 'sql', or reasons=0)"
            )

    def _check_segments(self) -> None:
        by = self.segment_by
        if by is None:
            return
        cols = (by,) if isinstance(by, str) else tuple(by)
        object.__setattr__(self, "segment_by", cols)
        types = {f.name: f.type for f in self.fields}
        if not cols or len(set(cols)) != len(cols):
            raise SpecError(f"model {self.name!r}: segment_by must name distinct columns")
        for c in cols:
            if types.get(c) not in ("category", "integer"):
                raise SpecError(
                    f"model {self.name!r}: segment_by column {c!r} must be a declared category "
                    f"or integer field (got {types.get(c, 'not declared')})"
                )
        if self.segment_min_rows < 1 or self.segment_min_positives < 0:
            raise SpecError(
                f"model {self.name!r}: segment_min_rows must be >= 1 and segment_min_positives >= 0"
            )

    @property
    def segments(self) -> tuple[str, ...]:
        """The segment columns, () when the model has one global fit."""
        return self.segment_by or ()  # type: ignore[return-value]

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


@dataclass(frozen=True)
class Outcomes:
    """Where realised outcomes arrive: a dbt model (or seed) with the record key, the outcome
    (NULL while unknown) and, optionally, when it became known (`outcome_at`: then only
    outcomes known after a record was first scored count). By default, the first model's
    feature relation and target."""

    relation: str
    key: str
    outcome: str
    outcome_at: str | None = None

    def __post_init__(self) -> None:
        names = [("relation", self.relation), ("key", self.key), ("outcome", self.outcome)]
        if self.outcome_at is not None:
            names.append(("outcome_at", self.outcome_at))
        for what, name in names:
            check_name(f"outcomes {what}", name)


@dataclass(frozen=True)
class Definitions:
    """What a project may train and score: the object `[tool.mlsm] definitions` names."""

    models: tuple[Model, ...]
    summaries: tuple[SummaryModel, ...] = ()
    outcomes: Outcomes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "summaries", tuple(self.summaries))
        if not self.models:
            raise SpecError("definitions: no models defined")
        for m in self.models:
            if not isinstance(m, Model):
                raise SpecError(f"definitions: {m!r} is not a mlsm_py.Model")
        check_project(self.models, self.summaries)

    def model(self, name: str) -> Model:
        for m in self.models:
            if m.name == name:
                return m
        raise SpecError(
            f"unknown model {name!r}; defined: {', '.join(sorted(m.name for m in self.models))}"
        )


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
        if s.call_list is not None:
            first = seen[s.models[0]]
            known = {first.key, first.split.column, *first.field_names}
            unknown = [c for c in s.call_list.columns if c not in known]
            if unknown:
                raise SpecError(
                    f"call list {s.call_list.name!r} of {s.name!r}: columns {unknown} are not "
                    f"declared fields of {first.features!r} (nor its key or time column)"
                )
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


# The summary side of the definitions lives in its own module; it uses check_name and
# METRIC_DIRECTIONS from here, so it is imported once they exist.
from mlsm_py.spec_summary import (  # noqa: E402
    SUMMARY_RULES,
    CallList,
    Split,
    SummaryModel,
)

__all__ = [
    "SUMMARY_RULES",
    "CallList",
    "Checks",
    "Definitions",
    "Field",
    "Model",
    "Outcomes",
    "Promotion",
    "Split",
    "SummaryModel",
    "TimeSplit",
]

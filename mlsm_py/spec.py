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
    """

    column: str
    holdout_days: int = 60
    gap_days: int = 14
    label_ready_after_days: int = 0

    def __post_init__(self) -> None:
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

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


@dataclass(frozen=True)
class Definitions:
    """What a project may train and score: the object `[tool.mlsm] definitions` names."""

    models: tuple[Model, ...]
    summaries: tuple[SummaryModel, ...] = ()

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


@dataclass(frozen=True)
class CallList:
    """A published mart for the people who act on a summary model's winners: one row per
    record with a winner, in call order (`call_rank`), with the winner, its fit and score, and
    the feature `columns` a sales rep needs, all from the same audited run."""

    name: str = "call_list"
    columns: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        check_name("call list", self.name)
        object.__setattr__(self, "columns", tuple(self.columns))
        for c in self.columns:
            check_name(f"call list {self.name!r} column", c)


SALT_RULE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
BUCKETS = 2**32  # a record's bucket: the first 8 hex digits of md5(salt:key), 0 <= b < 2**32


@dataclass(frozen=True)
class Split:
    """A champion/challenger traffic split: each record goes to one arm, by the md5 of
    `salt:key`, with the declared shares; the arm's live champion scores it. The same record
    lands in the same arm on every run and on every engine (md5 is the same everywhere; the
    engines' own hash() functions are not)."""

    arms: tuple[tuple[str, float], ...]
    salt: str

    def __post_init__(self) -> None:
        arms = tuple((str(m), float(share)) for m, share in self.arms)
        object.__setattr__(self, "arms", arms)
        if len(arms) < 2:
            raise SpecError("split: needs at least two arms")
        if not SALT_RULE.fullmatch(self.salt):
            raise SpecError(
                f"split salt {self.salt!r} must be 1-64 letters, digits, '_', '.' or '-'"
            )
        names = [m for m, _ in arms]
        if len(set(names)) != len(names):
            raise SpecError("split: an arm is listed twice")
        if any(share <= 0 for _, share in arms) or abs(sum(s for _, s in arms) - 1) > 1e-9:
            raise SpecError(f"split shares {[s for _, s in arms]} must be > 0 and add up to 1")

    def upper_bounds(self) -> list[tuple[str, int]]:
        """(arm, exclusive upper bucket) in order: arm i takes buckets below its bound."""
        out, total = [], 0.0
        for i, (m, share) in enumerate(self.arms):
            total += share
            out.append((m, BUCKETS if i == len(self.arms) - 1 else int(total * BUCKETS)))
        return out

    def arm_of(self, key: object) -> str:
        """The arm of a record, as the SQL assigns it (`mlsm.md5_bucket`)."""
        import hashlib

        bucket = int(hashlib.md5(f"{self.salt}:{key}".encode()).hexdigest()[:8], 16)
        return next(m for m, upper in self.upper_bounds() if bucket < upper)


# Summary rules; `docs/summary-rules.md` says when each fits.
SUMMARY_RULES = (
    "best_member",
    "highest_percentile",
    "priority",
    "highest_score",
    "mean_score",
    "split",
)


@dataclass(frozen=True)
class SummaryModel:
    """Picks one winner per record among its input models' live champions.

    Rules (challengers and drafts are scored but never win; NULL/NaN scores never win; ties
    go to the model listed first, `models` being the declared priority):

    - "best_member" (default): the member whose champion has the best holdout `metric`
      scores the record; if its score is missing, the next best does. Never worse than the
      best member on the holdout.
    - "highest_percentile": the highest percentile, each score placed on its own fit's
      holdout breakpoints (stored at training), so members on different scales compete fairly.
    - "priority": the first listed member with a valid score (a fixed fallback order).
    - "highest_score": the highest raw score; fair only when every member's score is a
      calibrated probability on one scale.
    - "mean_score": a blend, the mean of the valid member scores; the winner is the summary.
    - "split": an A/B test; the record's arm (`split`) scores it.
    """

    name: str
    models: tuple[str, ...]
    rule: Literal[
        "best_member", "highest_percentile", "priority", "highest_score", "mean_score", "split"
    ] = "best_member"
    description: str = ""
    call_list: CallList | None = None
    split: Split | None = None
    metric: str = "roc_auc"  # what "best_member" ranks by, on each champion's holdout
    priority: dict[str, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("summary model", self.name)
        models = tuple(self.models)
        if not models:
            raise SpecError(f"summary model {self.name!r}: needs at least one input model")
        for m in models:
            check_name("model", m)
        if len(set(models)) != len(models):
            raise SpecError(f"summary model {self.name!r}: an input model is listed twice")
        if self.rule not in SUMMARY_RULES:
            raise SpecError(
                f"summary model {self.name!r}: rule {self.rule!r} is unknown; "
                f"supported: {', '.join(SUMMARY_RULES)}"
            )
        if self.metric not in METRIC_DIRECTIONS:
            raise SpecError(
                f"summary model {self.name!r}: metric {self.metric!r} is unknown; "
                f"known: {', '.join(METRIC_DIRECTIONS)}"
            )
        if (self.rule == "split") != (self.split is not None):
            raise SpecError(
                f"summary model {self.name!r}: rule 'split' and a `split=Split(...)` go together"
            )
        if self.split is not None:
            stray = [m for m, _ in self.split.arms if m not in models]
            if stray:
                raise SpecError(
                    f"summary model {self.name!r}: split arms {stray} are not in models"
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

"""Summary models: how one winner per record is picked among models, the A/B split, and the
call list a summary publishes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mlsm_py.errors import SpecError
from mlsm_py.spec import METRIC_DIRECTIONS, check_name


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

"""The business rule that decides whether a challenger replaces the champion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlsm_py.errors import SpecError
from mlsm_py.spec import METRIC_DIRECTIONS, Promotion


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def judge(
    model_name: str, rule: Promotion, champion: Mapping[str, float], challenger: Mapping[str, float]
) -> Verdict:
    """Both metric sets must come from the same rows (the newest matured holdout)."""
    for name in (rule.metric, *(m for m, _ in rule.guards)):
        if name not in champion or name not in challenger:
            raise SpecError(
                f"model {model_name!r}: the promotion rule names {name!r}, which is not "
                f"measured for this model; measured: {', '.join(sorted(challenger))}"
            )
    old, new = champion[rule.metric], challenger[rule.metric]
    if any(math.isnan(v) for v in (old, new)):
        return Verdict(False, f"{rule.metric} is undefined on the holdout rows (one class only?)")
    gain = METRIC_DIRECTIONS[rule.metric] * (new - old)
    head = f"{rule.metric} {new:.4f} vs champion {old:.4f} (gain {gain:+.4f})"
    if not gain > rule.min_gain:
        return Verdict(False, f"{head}: not above the required gain {rule.min_gain:g}")
    for name, max_loss in rule.guards:
        loss = -METRIC_DIRECTIONS[name] * (challenger[name] - champion[name])
        if math.isnan(loss) or loss > max_loss:
            return Verdict(
                False,
                f"{head}, but guard {name} broken: {challenger[name]:.4f} vs champion "
                f"{champion[name]:.4f} loses {loss:.4f} > {max_loss:g}",
            )
    guards = "; guards held" if rule.guards else ""
    return Verdict(True, f"{head} > {rule.min_gain:g}{guards}")

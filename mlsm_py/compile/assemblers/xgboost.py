"""XGBoost boosters (binary, multiclass, regression)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ESTIMATORS: dict[type, Callable[..., Any]] = {}

"""scikit-learn GradientBoosting and HistGradientBoosting (classifier and regressor)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ESTIMATORS: dict[type, Callable[..., Any]] = {}

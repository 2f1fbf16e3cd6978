"""mlsm: multiple lead-score models, compiled to SQL and scored inside the warehouse."""

from typing import Any

from mlsm_py.spec import (
    CallList,
    Checks,
    Definitions,
    Field,
    Model,
    Outcomes,
    Promotion,
    Split,
    SummaryModel,
    TimeSplit,
)

__version__ = "0.1.0"

__all__ = [
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
    "to_sql",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The compiler imports every supported ML library; definitions and the registry CLI must
    # not pay for that, so `to_sql` loads it on first use.
    if name == "to_sql":
        from mlsm_py.compile import to_sql

        return to_sql
    raise AttributeError(f"module 'mlsm_py' has no attribute {name!r}")

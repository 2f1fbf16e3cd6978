"""mlsm: multiple lead-score models, compiled to SQL and scored inside the warehouse."""

from mlsm_py.compile import to_sql
from mlsm_py.spec import Field, Model, SummaryModel, TimeSplit

__version__ = "0.1.0"

__all__ = ["Field", "Model", "SummaryModel", "TimeSplit", "to_sql", "__version__"]

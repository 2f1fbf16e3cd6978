"""The demo project's model definitions: an explicit list, no import-time discovery.
`[tool.mlsm] definitions = "models_py:PROJECT"` in pyproject.toml names this object."""

from mlsm_py.spec import Definitions
from models_py.leads import MODELS, SUMMARIES

PROJECT = Definitions(models=MODELS, summaries=SUMMARIES)

__all__ = ["MODELS", "PROJECT", "SUMMARIES"]

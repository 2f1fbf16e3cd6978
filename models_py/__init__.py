"""The project's model definitions: an explicit list, no import-time discovery."""

from models_py.leads import MODELS, SUMMARIES

__all__ = ["MODELS", "SUMMARIES"]

"""`mlsm dashboard` as a dbt exposure: lineage (`dbt docs`, `dbt ls --select +exposure:*`)
shows the page as a consumer of the models and registry tables its readers' copy is made of,
so whoever changes one of them sees that the dashboard reads it."""

from __future__ import annotations

from collections.abc import Sequence

from mlsm_py.flow.readers import MONITORING_VIEWS, REGISTRY
from mlsm_py.registry.schema import SCHEMA

NAME = "mlsm_dashboard"
DEFAULT_URL = "http://127.0.0.1:8501"


def dashboard(call_lists: Sequence[str]) -> dict:
    """The exposure doc. Only rendered once `winners` exists: dbt refuses an exposure whose
    depends_on names a model that is not in the project."""
    refs = ["scores", "winners", *call_lists, *MONITORING_VIEWS]
    return {
        "version": 2,
        "exposures": [
            {
                "name": NAME,
                "label": "mlsm dashboard",
                "type": "dashboard",
                "maturity": "medium",
                "url": DEFAULT_URL,
                "description": "The business's page (`mlsm dashboard`, a Streamlit app): "
                "today's top leads with their winning model, champions beside challengers "
                "on holdout and realised metrics, the decision history, and drift and "
                "scores per build. It reads the readers' copy written after each "
                "publication (<warehouse>.published.duckdb), never the warehouse itself.",
                "depends_on": [
                    *(f"ref('{r}')" for r in refs),
                    *(f"source('{SCHEMA}', '{t}')" for t in REGISTRY),
                ],
                "owner": {"name": "mlsm"},
            }
        ],
    }

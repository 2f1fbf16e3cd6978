"""`mlsm init DIR`: a small project that `mlsm train && mlsm build` runs as written: one model
over a sample of leads that dbt loads as a seed, and a dbt project using the `mlsm` macros."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.csv as pacsv

from mlsm_py.demo.data import generate_leads
from mlsm_py.errors import MlsmError

PYPROJECT = """\
# An mlsm project: `mlsm train`, `mlsm build`, `mlsm retrain` read this table.
[tool.mlsm]
definitions = "definitions:PROJECT"   # module:ATTRIBUTE, imported from this directory
dbt_project = "dbt"
warehouse = "warehouse/mlsm.duckdb"   # $MLSM_WAREHOUSE overrides; relative to this directory
"""

DEFINITIONS = '''\
"""This project's models. mlsm imports PROJECT (pyproject.toml, [tool.mlsm] definitions)."""

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlsm_py import Definitions, Field, Model, Promotion, SummaryModel, TimeSplit

FIELDS = (
    Field("country", "category", description="ISO country, lower case"),
    Field("source_channel", "category"),
    Field("visits", "integer", nullable=False, min=0),
    Field("pages_viewed", "integer", nullable=False, min=0),
    Field("quotes_requested", "integer", nullable=False, min=0),
    Field("session_minutes", "double", min=0),
)
NUMBERS = ["visits", "pages_viewed", "quotes_requested", "session_minutes"]
CATEGORIES = ["country", "source_channel"]

lead_score = Model(
    name="lead_score",
    version=1,
    status="live",
    features="lead_features",
    key="lead_id",
    target="converted",
    fields=FIELDS,
    estimator=Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        (
                            "num",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer(strategy="median")),
                                    ("scale", StandardScaler()),
                                ]
                            ),
                            NUMBERS,
                        ),
                        (
                            "cat",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer(strategy="constant",
                                                             fill_value="missing")),
                                    ("encode", OneHotEncoder(handle_unknown="ignore",
                                                             sparse_output=False)),
                                ]
                            ),
                            CATEGORIES,
                        ),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ),
    # Outcomes are known within 30 days; train and judge on matured leads only.
    split=TimeSplit("created_at", holdout_days=60, gap_days=14, label_ready_after_days=30),
    population="converted is null",  # score the open leads
    promotion=Promotion(metric="roc_auc", min_gain=0.0),
    description="Logistic regression on engagement and origin.",
)

PROJECT = Definitions(
    models=[lead_score],
    summaries=[SummaryModel("lead_winner", models=("lead_score",))],
)
'''

DBT_PROJECT = """\
name: mlsm_project
version: "0.1.0"
config-version: 2
profile: mlsm
require-dbt-version: [">=1.11.0", "<1.12.0"]

model-paths: ["models"]
seed-paths: ["seeds"]
macro-paths: ["macros"]
clean-targets: ["target", "dbt_packages"]

flags:
  send_anonymous_usage_stats: false

seeds:
  mlsm_project:
    +schema: raw
    raw_leads:
      +column_types:
        lead_id: bigint
        created_at: timestamp
        country: varchar
        source_channel: varchar
        visits: integer
        pages_viewed: integer
        quotes_requested: integer
        session_minutes: double
        converted: integer

# Scores live in `audit` until their checks pass; mlsm publishes them to `published`.
models:
  mlsm_project:
    staging:
      +materialized: view
    features:
      +materialized: table
    scores:
      +materialized: table
      +schema: audit
"""

PROFILES = """\
# One output per warehouse; `mlsm --target NAME` (or dbt_target in pyproject.toml) chooses.
# DuckDB's path comes from MLSM_WAREHOUSE; `mlsm` sets it to an absolute path.
mlsm:
  target: duckdb
  outputs:
    duckdb:
      type: duckdb
      path: "{{ env_var('MLSM_WAREHOUSE', '../warehouse/mlsm.duckdb') }}"
      threads: "{{ env_var('MLSM_DBT_THREADS', '2') | as_number }}"
    # PostgreSQL (dbt-postgres; `pip install "mlsm[postgres]"`), connection from env vars.
    postgres:
      type: postgres
      host: "{{ env_var('MLSM_PG_HOST', '127.0.0.1') }}"
      port: "{{ env_var('MLSM_PG_PORT', '5432') | as_number }}"
      user: "{{ env_var('MLSM_PG_USER', 'mlsm') }}"
      password: "{{ env_var('MLSM_PG_PASSWORD', '') }}"
      dbname: "{{ env_var('MLSM_PG_DATABASE', 'mlsm') }}"
      schema: public
      threads: "{{ env_var('MLSM_DBT_THREADS', '2') | as_number }}"
"""

PACKAGES = """\
# The mlsm macro package, shipped with mlsm; `mlsm` sets MLSM_DBT_PACKAGE to where it is.
packages:
  - local: "{{ env_var('MLSM_DBT_PACKAGE') }}"
"""

SCHEMA_NAME = """\
{#- Custom schemas are used as named (raw, audit), not prefixed with the target schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
"""

STAGING = """\
with

source as (

    select * from {{ ref('raw_leads') }}

),

renamed as (

    select
        lead_id,
        created_at,
        lower(trim(country)) as country,
        lower(trim(source_channel)) as source_channel,
        visits,
        pages_viewed,
        quotes_requested,
        cast(session_minutes as {{ mlsm.type_double() }}) as session_minutes,
        converted

    from source

)

select * from renamed
"""

STAGING_YML = """\
version: 2

models:
  - name: stg_leads
    description: Leads from the sample seed, typed and with normalised spellings.
    columns:
      - name: lead_id
        data_tests:
          - unique
          - not_null
      - name: created_at
        data_tests:
          - not_null
"""

FEATURES = """\
with

leads as (

    select * from {{ ref('stg_leads') }}

),

final as (

    select
        lead_id,
        created_at,
        country,
        source_channel,
        visits,
        pages_viewed,
        quotes_requested,
        session_minutes,
        converted

    from leads

)

select * from final
"""

GITIGNORE = "warehouse/\nlogs/\ndbt/target/\ndbt/dbt_packages/\ndbt/logs/\ndbt/package-lock.yml\n"

SAMPLE_COLUMNS = [
    "lead_id",
    "created_at",
    "country",
    "source_channel",
    "visits",
    "pages_viewed",
    "quotes_requested",
    "session_minutes",
    "converted",
]


def init(directory: Path, rows: int = 5000, seed: int = 42) -> Path:
    root = directory.resolve()
    if root.exists() and any(root.iterdir()):
        raise MlsmError(
            f"{root} is not empty; mlsm init writes a new project into an empty or new directory"
        )
    files = {
        "pyproject.toml": PYPROJECT,
        "definitions.py": DEFINITIONS,
        ".gitignore": GITIGNORE,
        "dbt/dbt_project.yml": DBT_PROJECT,
        "dbt/profiles.yml": PROFILES,
        "dbt/packages.yml": PACKAGES,
        "dbt/macros/generate_schema_name.sql": SCHEMA_NAME,
        "dbt/models/staging/stg_leads.sql": STAGING,
        "dbt/models/staging/stg_leads.yml": STAGING_YML,
        "dbt/models/features/lead_features.sql": FEATURES,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sample = generate_leads(rows, seed).select(SAMPLE_COLUMNS)
    buf = io.BytesIO()
    pacsv.write_csv(sample, buf)
    (root / "dbt" / "seeds").mkdir(parents=True, exist_ok=True)
    (root / "dbt" / "seeds" / "raw_leads.csv").write_bytes(buf.getvalue())
    return root

"""Demo lead-scoring models: three live models, one draft, and a summary that picks a winner."""

from __future__ import annotations

from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlsm_py.spec import CallList, Field, Model, Promotion, SummaryModel, TimeSplit

# The levels the CRM export uses (the dbt contracts check them).
COUNTRIES = ("de", "fr", "gb", "us", "nl", "es", "it", "pl", "se", "other")
CHANNELS = ("organic", "paid_search", "social", "referral", "email", "partner")
COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
INDUSTRIES = ("software", "retail", "manufacturing", "finance", "health", "education", "other")

FIELDS = (
    Field("country", "category", levels=COUNTRIES, description="ISO country, lower case"),
    Field("source_channel", "category", levels=CHANNELS),
    Field("company_size", "category", levels=COMPANY_SIZES),
    Field("industry", "category", levels=INDUSTRIES),
    Field("annual_revenue_k", "double", min=0, description="Revenue in thousands"),
    Field("visits", "integer", nullable=False, min=0, max=100_000),
    Field("pages_viewed", "integer", nullable=False, min=0, max=1_000_000),
    Field("quotes_requested", "integer", nullable=False, min=0, max=1_000),
    Field("email_opens", "integer", min=0, max=100_000),
    Field("session_minutes", "double", min=0),
    Field("days_since_last_visit", "integer", min=0, max=3650),
    Field("pages_per_visit", "double", min=0),
)
CATEGORIES = [f.name for f in FIELDS if f.type == "category"]
NUMBERS = [f.name for f in FIELDS if f.type != "category"]
# A lead's outcome is known within 30 days; the newest leads are still open.
SPLIT = TimeSplit(column="created_at", holdout_days=60, gap_days=14, label_ready_after_days=30)
# Promote a challenger with a better ROC AUC on the newest matured leads, unless it loses more
# than one point of top-decile capture (the share of conversions sales reaches first).
RULE = Promotion(metric="roc_auc", min_gain=0.0, guards=(("top_decile_capture", 0.01),))


def _one_hot() -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )


def _columns(numeric) -> ColumnTransformer:
    return ColumnTransformer([("num", numeric, NUMBERS), ("cat", _one_hot(), CATEGORIES)])


def _model(name: str, status: str, estimator, description: str, **more) -> Model:
    return Model(
        name=name,
        version=1,
        status=status,
        features="lead_features",
        key="lead_id",
        target="converted",
        fields=FIELDS,
        estimator=estimator,
        split=SPLIT,
        description=description,
        population="converted is null",  # score open leads only
        promotion=RULE,
        **more,
    )


logreg = _model(
    "lead_logreg",
    "live",
    Pipeline(
        [
            (
                "columns",
                _columns(
                    Pipeline(
                        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                    )
                ),
            ),
            ("model", LogisticRegression(C=1.0, max_iter=2000)),
        ]
    ),
    "Logistic regression on imputed, scaled numbers and one-hot categories.",
    reasons=4,  # the four inputs that moved each lead's score most (call list, API)
)

forest = _model(
    "lead_forest",
    "live",
    Pipeline(
        [
            ("columns", _columns("passthrough")),
            (
                "model",
                RandomForestClassifier(
                    n_estimators=60, max_depth=8, min_samples_leaf=40, random_state=7, n_jobs=2
                ),
            ),
        ]
    ),
    "Random forest; missing numbers are routed natively (learned per split).",
    reasons=4,  # computed in SQL, so the forest is scored in SQL too
)

lgbm = _model(
    "lead_lgbm",
    "live",
    Pipeline(
        [
            ("columns", _columns("passthrough")),
            (
                "model",
                LGBMClassifier(
                    n_estimators=150,
                    learning_rate=0.05,
                    num_leaves=15,
                    min_child_samples=50,
                    subsample=0.8,
                    subsample_freq=1,
                    colsample_bytree=0.8,
                    random_state=7,
                    deterministic=True,
                    force_row_wise=True,
                    n_jobs=2,
                    verbose=-1,
                ),
            ),
        ]
    ),
    "LightGBM gradient boosting, one fit per country; missing numbers follow LightGBM's "
    "default directions.",
    # A fit per country; a country with under 3,000 training leads (and leads with no
    # country, or a country first seen when scoring) is scored by the global fit.
    segment_by="country",
    segment_min_rows=3000,
    reasons=4,
)

extra_trees_draft = _model(
    "lead_extra_trees",
    "draft",
    Pipeline(
        [
            ("columns", _columns(SimpleImputer(strategy="median"))),
            (
                "model",
                ExtraTreesClassifier(
                    n_estimators=30, max_depth=7, min_samples_leaf=40, random_state=7, n_jobs=2
                ),
            ),
        ]
    ),
    "Draft: extra trees, scored for comparison but never a winner until made live.",
)

MODELS = [logreg, forest, lgbm, extra_trees_draft]

SUMMARIES = [
    SummaryModel(
        name="lead_winner",
        models=("lead_lgbm", "lead_forest", "lead_logreg", "lead_extra_trees"),
        # Each live champion is ranked by its holdout ROC AUC; the best scores every lead it
        # can, the next one the rest. "highest_score" would compare unlike scales: the model
        # with the most spread-out probabilities would win most leads.
        rule="best_member",
        description="The live model with the best holdout ROC AUC scores each lead; the "
        "next best fills in where its score is missing.",
        # What sales reads: published.call_list, open leads in call order.
        call_list=CallList(
            "call_list",
            columns=(
                "created_at",
                "country",
                "company_size",
                "industry",
                "source_channel",
                "visits",
                "quotes_requested",
                "days_since_last_visit",
            ),
        ),
    )
]

"""A seeded synthetic lead data set with realistic NULLs, categories and a non-linear signal."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsm_py.registry import store

COUNTRIES = ["de", "fr", "gb", "us", "nl", "es", "it", "pl", "se", "other"]
CHANNELS = ["organic", "paid_search", "social", "referral", "email", "partner"]
COMPANY_SIZES = ["1-10", "11-50", "51-200", "201-1000", "1000+"]
INDUSTRIES = ["software", "retail", "manufacturing", "finance", "health", "education", "other"]
START = np.datetime64("2025-01-01T00:00:00")
DAYS = 365
LABEL_DAYS = 30  # an outcome is known at the latest this long after a lead is created


def _nullify(values: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    return np.where(rng.random(len(values)) < share, None, values)


def generate_leads(
    rows: int = 100_000,
    seed: int = 42,
    start: np.datetime64 = START,
    days: float = DAYS,
    first_id: int = 1,
    double_counted: float = 0.0,
    outcomes: str = "matured",
) -> pa.Table:
    """Leads created over `days` from `start`, with offline attributes, online behaviour and
    a target. `outcomes`: "matured" (the newest leads still open), "all" (every outcome has
    arrived: the same leads, later) or "none" (all open). `double_counted`: the share of leads
    whose visits a broken tracker counts twice (a drift in one input, the outcome unchanged)."""
    rng = np.random.default_rng(seed)
    n = rows
    created = start + (rng.random(n) * days * 86400).astype("timedelta64[s]")
    created.sort()  # lead ids grow with time, as in a real CRM
    country = rng.choice(
        COUNTRIES, n, p=[0.18, 0.12, 0.14, 0.2, 0.06, 0.07, 0.07, 0.05, 0.04, 0.07]
    )
    channel = rng.choice(CHANNELS, n, p=[0.3, 0.25, 0.15, 0.12, 0.1, 0.08])
    size_idx = rng.choice(len(COMPANY_SIZES), n, p=[0.35, 0.28, 0.2, 0.12, 0.05])
    industry = rng.choice(INDUSTRIES, n)
    revenue = np.round(np.exp(rng.normal(5.0 + 0.8 * size_idx, 1.0)), 1)  # thousands
    engaged = rng.gamma(1.5, 1.0, n) * (1 + 0.6 * (channel == "referral"))
    visits = rng.poisson(1 + 3 * engaged)
    pages = visits * rng.poisson(2 + engaged) + rng.poisson(1, n)
    quotes = rng.binomial(np.minimum(visits, 5), 0.08)
    opens = rng.poisson(2 * engaged)
    minutes = np.round(visits * rng.gamma(2.0, 2.5, n), 2)
    days_since = np.where(visits > 0, np.minimum(rng.exponential(30 / (1 + engaged)), 365), np.nan)
    days_since = np.round(days_since).astype(float)

    # Non-linear signal: interactions, a saturating engagement effect and a recency cliff.
    logit = (
        -4.6
        + 1.3 * np.tanh(visits / 6)
        + 0.9 * (quotes > 0)
        + 0.5 * np.log1p(pages) * (size_idx >= 2)
        - 0.9 * (np.nan_to_num(days_since, nan=400) > 45)
        + 0.6 * (channel == "referral")
        + 0.4 * ((country == "us") | (country == "gb"))
        - 0.3 * (industry == "education")
        + 0.2 * np.sin(np.log1p(revenue))
        + 0.15 * np.minimum(opens, 6)
    )
    converted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int32")
    # Outcomes arrive over the first LABEL_DAYS after a lead is created: the newest leads are
    # still open (NULL), unless they have already been won or lost.
    age_days = (created.max() - created).astype("timedelta64[s]").astype(float) / 86400
    known = rng.random(n) < np.minimum(age_days / LABEL_DAYS, 1.0)
    if outcomes != "matured":
        known = np.full(n, outcomes == "all")

    if double_counted:
        visits = np.where(rng.random(n) < double_counted, 2 * visits, visits)
    sizes = np.array(COMPANY_SIZES, dtype=object)[size_idx]
    cols = {
        "lead_id": pa.array(np.arange(first_id, first_id + n, dtype="int64")),
        "created_at": pa.array(created.astype("datetime64[us]")),
        "country": pa.array(_nullify(country.astype(object), rng, 0.03), type=pa.string()),
        "source_channel": pa.array(_nullify(channel.astype(object), rng, 0.02), type=pa.string()),
        "company_size": pa.array(_nullify(sizes, rng, 0.05), type=pa.string()),
        "industry": pa.array(_nullify(industry.astype(object), rng, 0.04), type=pa.string()),
        "annual_revenue_k": pa.array(_nullify(revenue, rng, 0.08), type=pa.float64()),
        "visits": pa.array(visits.astype("int32")),
        "pages_viewed": pa.array(pages.astype("int32")),
        "quotes_requested": pa.array(quotes.astype("int32")),
        "email_opens": pa.array(_nullify(opens, rng, 0.03), type=pa.int32()),
        "session_minutes": pa.array(_nullify(minutes, rng, 0.04), type=pa.float64()),
        "days_since_last_visit": pa.array(
            np.nan_to_num(days_since).astype("int32"), mask=np.isnan(days_since)
        ),
        "converted": pa.array(converted, mask=~known),
    }
    return pa.table(cols)


def rows_in(con, schema: str = "raw", name: str = "leads") -> int:
    """Rows in raw.leads; 0 when the table does not exist."""
    if not store.table_exists(con, schema, name):
        return 0
    return int(con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0])


def load_leads(con, table: pa.Table, schema: str = "raw", name: str = "leads", target=None) -> None:
    """Create or replace raw.leads with `table`, in one transaction; `con` is a connection to
    `target`'s warehouse (None: a DuckDB connection). Callers check `rows_in` first:
    replacing data a user loaded needs their say-so."""
    from mlsm_py.warehouse.targets import Target

    target = target or Target("duckdb", {"type": "duckdb"}, None)
    with store.transaction(con):
        target.load_arrow(con, schema, name, table)

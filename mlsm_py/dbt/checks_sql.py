"""Data checkers 1 and 2 as generated dbt models, each row a finding the tests then judge:

- `input_drift`: per model champion and input, the PSI of the records it scores against the
  fit's training distribution (mlsm_registry.fit_input_reference), and the share of unseen
  levels. Each input is binned once per distinct binning (champions trained together share
  them), all inputs in one scan (grouping sets).
- `score_checks`: per scored fit, the rows, NULL share, mean score and the PSI of its score
  deciles against its holdout's (mlsm_registry.fit_bins, table 'score_deciles').

The thresholds are rendered from the definitions, the bins from the registry, so the files are
a deterministic function of both. `checks.drift` is the same arithmetic in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mlsm_py.checks.drift import EPS
from mlsm_py.dbt.common import RUN_ID, Scored, sql_string
from mlsm_py.dbt.common import header as _header
from mlsm_py.registry.store import CHAMPION

DOUBLE = "{{ mlsm.type_double() }}"
_num_eps = repr(float(EPS))
STRING = "{{ dbt.type_string() }}"


# Population stability over the `shares` rows; shares floored at EPS (see checks.drift).
PSI = (
    f"        sum((greatest(actual_share, {_num_eps}) - greatest(expected_share, {_num_eps}))\n"
    f"            * ln(greatest(actual_share, {_num_eps}) / greatest(expected_share, {_num_eps}))) "
    "as psi"
)


def _level(limits: str) -> str:
    """The finding's level from the measured PSI and the thresholds in `limits`."""
    return (
        "        case\n            when totals.total is null or totals.total = 0 then 'empty'\n"
        f"            when totals.total < {limits}.min_rows then 'too_few_rows'\n"
        f"            when measured.psi >= {limits}.error_at then 'error'\n"
        f"            when measured.psi >= {limits}.warn_at then 'warn'\n"
        "            else 'ok'\n        end as level,\n"
    )


def _num(v: float) -> str:
    return repr(float(v))


def _case(column: str, kind: str, ref: Sequence[Mapping], is_double: bool) -> tuple[str, int]:
    """The CASE that bins `column` as the reference does, and the unseen bin (categories)."""
    col = f'"{column}"'
    missing = f"{col} is null"
    if is_double:
        missing += f" or {col} = cast('NaN' as {DOUBLE})"
    lines = [f"when {missing} then 0"]
    if kind == "numeric":
        cuts = [r["upper"] for r in ref if r["bin"] >= 1 and r["upper"] is not None]
        lines += [f"when {col} <= {_num(c)} then {i + 1}" for i, c in enumerate(cuts)]
        return "case " + " ".join(lines) + f" else {len(cuts) + 1} end", -1
    levels = [r for r in ref if r["bin"] >= 1 and r["level"] not in (None, "__unseen__")]
    unseen = max(r["bin"] for r in ref)
    lines += [
        f"when cast({col} as {STRING}) = {sql_string(r['level'])} then {r['bin']}" for r in levels
    ]
    return "case " + " ".join(lines) + f" else {unseen} end", unseen


def input_drift(scored: Sequence[Scored]) -> str | None:
    champions = [s for s in scored if s.alias == CHAMPION and s.reference]
    inputs: list[tuple] = []  # (binning, model, fit, column, kind, warn, error, unseen)
    groups: dict[tuple, dict] = {}  # (relation, population) -> {case: binning}
    for s in sorted(champions, key=lambda s: s.model.name):
        m = s.model
        by_col: dict[str, list] = {}
        for r in s.reference:
            by_col.setdefault(r["column_name"], []).append(r)
        for f in m.fields:
            if f.drift is None or f.name not in by_col:
                continue
            ref = sorted(by_col[f.name], key=lambda r: r["bin"])
            kind = ref[0]["kind"]
            case, unseen = _case(f.name, kind, ref, f.type == "double")
            group = groups.setdefault((m.features, m.population or ""), {})
            if case not in group:  # a new binning: numbered across all groups
                group[case] = 1 + sum(len(g) for g in groups.values())
            binning = group[case]
            inputs.append(
                (
                    binning,
                    m.name,
                    s.fit["fit_id"],
                    f.name,
                    kind,
                    *f.drift,
                    unseen,
                    m.checks.drift_min_rows,
                )
            )
    if not inputs:
        return None
    ctes, actual = [], []
    for gi, ((relation, population), cases) in enumerate(sorted(groups.items()), start=1):
        where = f"\n    where ({population})" if population else ""
        ctes.append(
            f"population_{gi} as (\n\n    select * from {{{{ ref('{relation}') }}}}{where}\n\n)"
        )
        order = sorted((b, case) for case, b in cases.items())
        cols = ",\n".join(f"        {case} as b_{b}" for b, case in order)
        ctes.append(f"binned_{gi} as (\n\n    select\n{cols}\n    from population_{gi}\n\n)")
        names = [f"b_{b}" for b, _ in order]
        sets = ", ".join(f"({n})" for n in names)
        ctes.append(
            f"counted_{gi} as (\n\n    select {', '.join(names)}, count(*) as n\n"
            f"    from binned_{gi}\n    group by grouping sets ({sets})\n\n)"
        )
        actual += [
            f"    select {b} as binning, b_{b} as bin, n from counted_{gi} where b_{b} is not null"
            for b, _ in order
        ]
    values = ",\n        ".join(
        f"({b}, {sql_string(m)}, {sql_string(f)}, {sql_string(c)}, {sql_string(k)}, "
        f"{_num(w)}, {_num(e)}, {u}, {n})"
        for b, m, f, c, k, w, e, u, n in inputs
    )
    body = (
        "with\n\n"
        + ",\n\n".join(ctes)
        + ",\n\nactual as (\n\n"
        + "\n    union all\n".join(actual)
        + "\n\n),\n\n"
        "inputs as (\n\n    select * from (values\n        "
        + values
        + "\n    ) as t(binning, model_name, fit_id, column_name, kind, warn_at, error_at, "
        "unseen_bin, min_rows)\n\n),\n\n"
        "expected as (\n\n    select inputs.binning, inputs.fit_id, inputs.column_name, "
        "reference.bin, reference.share\n"
        "    from inputs\n    inner join {{ source('mlsm_registry', 'fit_input_reference') }} "
        "as reference\n        on reference.fit_id = inputs.fit_id\n"
        "        and reference.column_name = inputs.column_name\n\n),\n\n"
        "totals as (\n\n    select binning, sum(n) as total from actual group by binning\n\n),\n\n"
        # The reference has every bin the CASE can give (zero shares included), so each
        # actual bin meets its expected one.
        "shares as (\n\n    select\n"
        "        expected.binning,\n        expected.fit_id,\n        expected.column_name,\n"
        "        expected.share as expected_share,\n"
        f"        coalesce(cast(actual.n as {DOUBLE}) / totals.total, 0) as actual_share\n"
        "    from expected\n"
        "    left join actual on actual.binning = expected.binning and actual.bin = expected.bin\n"
        "    left join totals on totals.binning = expected.binning\n\n),\n\n"
        "measured as (\n\n    select\n"
        "        binning,\n        fit_id,\n        column_name,\n"
        + PSI
        + "\n    from shares\n    group by binning, fit_id, column_name\n\n),\n\n"
        "unseen as (\n\n    select inputs.binning, inputs.fit_id, inputs.column_name,\n"
        f"        coalesce(cast(actual.n as {DOUBLE}) / totals.total, 0) as unseen_share\n"
        "    from inputs\n    left join actual on actual.binning = inputs.binning "
        "and actual.bin = inputs.unseen_bin\n"
        "    left join totals on totals.binning = inputs.binning\n\n),\n\n"
        "final as (\n\n    select\n        inputs.model_name,\n        inputs.fit_id,\n"
        "        inputs.column_name,\n        inputs.kind,\n"
        "        coalesce(totals.total, 0) as rows_checked,\n"
        "        case when totals.total > 0 then measured.psi end as psi,\n"
        "        unseen.unseen_share,\n        inputs.warn_at,\n        inputs.error_at,\n"
        + _level("inputs")
        + f"        {RUN_ID} as run_id\n"
        "    from inputs\n    left join measured on measured.binning = inputs.binning "
        "and measured.fit_id = inputs.fit_id and measured.column_name = inputs.column_name\n"
        "    left join totals on totals.binning = inputs.binning\n"
        "    left join unseen on unseen.binning = inputs.binning "
        "and unseen.fit_id = inputs.fit_id and unseen.column_name = inputs.column_name\n"
        "\n)\n\nselect * from final\n"
    )
    about = [
        "input drift (data checker 1): per model champion and input, PSI of the records it "
        "scores against the fit's training distribution (mlsm_registry.fit_input_reference)"
    ]
    return _header(about, "--") + "\n" + body


def score_checks(scored: Sequence[Scored]) -> str:
    rows = []
    for s in sorted(
        scored, key=lambda s: (s.model.name, s.alias, s.segment or "", s.fit["fit_id"])
    ):
        c = s.model.checks
        low, high = c.score_mean if c.score_mean is not None else (None, None)
        rows.append(
            f"({sql_string(s.model.name)}, {sql_string(s.alias)}, {sql_string(s.fit['fit_id'])}, "
            f"{_num(c.score_drift[0])}, {_num(c.score_drift[1])}, {c.drift_min_rows}, "
            f"cast({'null' if low is None else _num(low)} as {DOUBLE}), "
            f"cast({'null' if high is None else _num(high)} as {DOUBLE}))"
        )
    body = (
        "with\n\nscores as (\n\n    select * from {{ ref('scores') }}\n\n),\n\n"
        "fits as (\n\n    select * from (values\n        "
        + ",\n        ".join(rows)
        + "\n    ) as t(model_name, role, fit_id, warn_at, error_at, min_rows, mean_low, "
        "mean_high)\n\n),\n\n"
        "counts as (\n\n    select\n        fit_id,\n        count(*) as rows_checked,\n"
        "        sum(case when score is null then 1 else 0 end) as null_scores,\n"
        "        avg(score) as mean_score\n    from scores\n    group by fit_id\n\n),\n\n"
        "deciles as (\n\n    select fit_id, decile, count(*) as n\n    from scores\n"
        "    where decile is not null\n    group by fit_id, decile\n\n),\n\n"
        "totals as (\n\n    select fit_id, sum(n) as total from deciles group by fit_id\n\n),\n\n"
        "expected as (\n\n    select fit_id, bin as decile, observed_rate as share\n"
        "    from {{ source('mlsm_registry', 'fit_bins') }}\n"
        "    where table_name = 'score_deciles'\n        and fit_id in (select fit_id from fits)"
        "\n\n),\n\n"
        "shares as (\n\n    select\n        expected.fit_id,\n"
        "        expected.share as expected_share,\n"
        f"        coalesce(cast(deciles.n as {DOUBLE}) / totals.total, 0) as actual_share\n"
        "    from expected\n    left join deciles on deciles.fit_id = expected.fit_id "
        "and deciles.decile = expected.decile\n"
        "    left join totals on totals.fit_id = expected.fit_id\n\n),\n\n"
        "measured as (\n\n    select\n        fit_id,\n"
        + PSI
        + "\n    from shares\n    group by fit_id\n\n),\n\n"
        "final as (\n\n    select\n        fits.model_name,\n        fits.role,\n"
        "        fits.fit_id,\n        coalesce(counts.rows_checked, 0) as rows_checked,\n"
        f"        cast(counts.null_scores as {DOUBLE}) / nullif(counts.rows_checked, 0) "
        "as null_share,\n        counts.mean_score,\n"
        "        case when totals.total > 0 then measured.psi end as psi,\n"
        "        fits.warn_at,\n        fits.error_at,\n        fits.mean_low,\n"
        "        fits.mean_high,\n" + _level("fits") + f"        {RUN_ID} as run_id\n"
        "    from fits\n    left join counts on counts.fit_id = fits.fit_id\n"
        "    left join totals on totals.fit_id = fits.fit_id\n"
        "    left join measured on measured.fit_id = fits.fit_id\n\n)\n\nselect * from final\n"
    )
    about = [
        "score checks (data checker 2): per scored fit, rows, NULL share, mean score and the "
        "PSI of its score deciles against its holdout's (mlsm_registry.fit_bins)"
    ]
    return _header(about, "--") + "\n" + body


def _flagged(name: str, where: str, severity: str) -> dict:
    return {
        "mlsm.flagged": {
            "name": name,
            "arguments": {"condition": where},
            "config": {"severity": severity, "store_failures": True},
        }
    }


def input_drift_yml() -> dict:
    return {
        "name": "input_drift",
        "description": "Data checker 1: per model champion and input, the PSI of the records it "
        "scores against its fit's training distribution, and the share of levels training "
        "never saw. 'error' stops publication; 'warn' is reported and published.",
        "data_tests": [
            _flagged("input_drift__error", "level = 'error'", "error"),
            _flagged("input_drift__warn", "level = 'warn'", "warn"),
        ],
        "columns": [
            {"name": "model_name", "description": "The model whose champion's reference is used."},
            {"name": "fit_id", "description": "The champion fit (mlsm_registry.fits)."},
            {"name": "column_name", "description": "The input."},
            {"name": "kind", "description": "numeric (training deciles) or category (levels)."},
            {"name": "rows_checked", "description": "Records of the model's population."},
            {"name": "psi", "description": "Population stability index against training."},
            {"name": "unseen_share", "description": "Share of category levels training never saw."},
            {"name": "warn_at", "description": "PSI at which the check warns."},
            {"name": "error_at", "description": "PSI at which the check stops publication."},
            {
                "name": "level",
                "description": "ok, warn, error; empty (nothing to score) or too_few_rows "
                "(fewer records than the model's drift_min_rows: reported, never failed).",
            },
            {"name": "run_id", "description": "The build."},
        ],
    }


def score_checks_yml() -> dict:
    return {
        "name": "score_checks",
        "description": "Data checker 2: per scored fit, the NULL-score share, the mean score "
        "and the PSI of its score deciles against its holdout's. Published only if they pass.",
        "data_tests": [
            _flagged("score_checks__drift_error", "level = 'error'", "error"),
            _flagged("score_checks__drift_warn", "level = 'warn'", "warn"),
            _flagged(
                "score_checks__mean_outside_band",
                "mean_low is not null and (mean_score < mean_low or mean_score > mean_high)",
                "error",
            ),
        ],
        "columns": [
            {"name": "model_name", "description": "The model."},
            {"name": "role", "description": "champion or challenger."},
            {"name": "fit_id", "description": "The fit (mlsm_registry.fits)."},
            {"name": "rows_checked", "description": "Records scored."},
            {"name": "null_share", "description": "Share of NULL scores."},
            {"name": "mean_score", "description": "Mean score."},
            {"name": "psi", "description": "PSI of the score deciles against the holdout's."},
            {"name": "warn_at", "description": "PSI at which the check warns."},
            {"name": "error_at", "description": "PSI at which the check stops publication."},
            {"name": "mean_low", "description": "Lowest mean score allowed (NULL: no band)."},
            {"name": "mean_high", "description": "Highest mean score allowed."},
            {
                "name": "level",
                "description": "ok, warn, error; empty or too_few_rows (reported, never failed).",
            },
            {"name": "run_id", "description": "The build."},
        ],
    }

"""Reason-code columns in the generated SQL: which fits carry them, the columns every part of a
union selects (NULL where a fit has fewer or none), and the call list's readable text from the
project's `reason_texts` seed (decision 0021)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mlsm_py.dbt.common import Scored

SEED = "reason_texts"
DIRECTIONS = ("up", "down")  # the contribution raised the score / lowered it


def k_of(s: Scored) -> int:
    """How many reason columns the fit's SQL selects (0: none)."""
    doc = s.fit.get("reasons")
    return int(json.loads(doc)["k"]) if doc else 0


def most(scored: Sequence[Scored]) -> int:
    return max((k_of(s) for s in scored), default=0)


def select_list(k: int, upto: int, prefix: str = "") -> list[str]:
    """reason_1, reason_1_contribution, ... up to `upto`: the fit's own first `k`, NULLs after."""
    out = []
    for i in range(1, upto + 1):
        if i <= k:
            out += [f"{prefix}reason_{i}", f"{prefix}reason_{i}_contribution"]
        else:
            out += [
                f"cast(null as varchar) as reason_{i}",
                f"cast(null as {{{{ mlsm.type_double() }}}}) as reason_{i}_contribution",
            ]
    return out


def call_list_parts(key: str, k: int) -> tuple[str, str, list[str]]:
    """(CTEs, joins, select lines) adding the winning score's reasons and their text to a call
    list: the reason columns of the winner's champion row in `scores`, and per reason the
    seed's text for its input and direction (the input's name when the seed has none)."""
    ctes = (
        "reasons as (\n\n"
        f"    select {key}, fit_id, {', '.join(select_list(k, k))}\n"
        "    from {{ ref('scores') }}\n    where role = 'champion'\n\n),\n\n"
        f"reason_texts as (\n\n    select * from {{{{ ref('{SEED}') }}}}\n\n),\n\n"
    )
    joins = [
        f"    left join reasons on reasons.{key} = winners.{key}\n"
        "        and reasons.fit_id = winners.winning_fit_id"
    ]
    lines = []
    for i in range(1, k + 1):
        t = f"text_{i}"
        joins.append(
            f"    left join reason_texts as {t} on {t}.input_column = reasons.reason_{i}\n"
            f"        and {t}.direction = case when reasons.reason_{i}_contribution >= 0 "
            "then 'up' else 'down' end"
        )
        lines += [
            f"        reasons.reason_{i}",
            f"        reasons.reason_{i}_contribution",
            f"        coalesce({t}.text, reasons.reason_{i}) as reason_{i}_text",
        ]
    return ctes, "\n".join(joins), lines


def columns_yml(k: int, text: bool = False) -> list[dict]:
    out = []
    for i in range(1, k + 1):
        out.append(
            {
                "name": f"reason_{i}",
                "description": f"The input with the {_nth(i)} largest |contribution| to this "
                "score (ties: the input listed first); NULL when the fit has no reason codes.",
            }
        )
        out.append(
            {
                "name": f"reason_{i}_contribution",
                "description": f"reason_{i}'s signed contribution on the margin scale (the "
                "logit for a logistic model or boosted classifier, the probability for a "
                "random forest): positive raised the score. Expected value + all inputs' "
                "contributions = the margin.",
            }
        )
        if text:
            out.append(
                {
                    "name": f"reason_{i}_text",
                    "description": f"reason_{i} in words, from the project's `{SEED}` seed "
                    "(by input and direction); the input's name where the seed has no text.",
                }
            )
    return out


def ensure_seed(dbt_dir, defs) -> str | None:
    """Write a starter `seeds/reason_texts.csv` (one plain sentence per field and direction)
    when a model declares reasons and the project has none; the file is the project's from
    then on and never rewritten. Returns its path when written."""
    import csv
    import io

    path = dbt_dir / "seeds" / f"{SEED}.csv"
    names = sorted({f.name for m in defs.models if m.reasons for f in m.fields})
    if not names or path.exists():
        return None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["input_column", "direction", "text"])
    for n in names:
        w.writerow([n, "up", f"{n} raised the score"])
        w.writerow([n, "down", f"{n} lowered the score"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue())
    return str(path)


def _nth(i: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(i, f"{i}th")

"""What the last published build scored (schema `mlsm_state`), which incremental scoring
compares each build with (mlsm_py/dbt/incremental_sql.py):

scorers            the sha256 of each scorer's generated SQL (model, role)
<relation>__rows   the fingerprint of each feature row
unit_tests         the sha256 of what the dbt unit tests ran on (`unit_tested`)

Publication rewrites them inside its transaction, so they always describe the published
tables: a failed build changes nothing here, and the next build sees the same changes again.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import duckdb
from sqlglot import exp

from mlsm_py.dbt import incremental_sql as inc
from mlsm_py.registry import store
from mlsm_py.spec import Definitions

STATE = inc.STATE
AUDIT = "audit"


def _table(name: str) -> str:
    return exp.to_table(f"{STATE}.{name}", dialect="duckdb").sql("duckdb", identify=True)


def relations(defs: Definitions) -> list[str]:
    return sorted({m.features for m in defs.models})


def ensure(con: duckdb.DuckDBPyConnection, defs: Definitions) -> None:
    """Create the state tables if missing (a first build: nothing published yet)."""
    key = defs.models[0].key
    k = exp.to_identifier(key, quoted=True).sql("duckdb")
    con.execute(f"create schema if not exists {STATE}")
    con.execute(
        f"create table if not exists {_table('scorers')} "
        "(model_name varchar, role varchar, scorer_sha varchar)"
    )
    con.execute(f"create table if not exists {_table('unit_tests')} (tested_sha varchar)")
    for rel in relations(defs):
        # Typed as the relation's key (it exists: `mlsm train` built it); varchar otherwise.
        key_type = dict(store.relation_columns(con, rel)).get(key, "varchar")
        con.execute(
            f"create table if not exists {_table(inc.rows_name(rel))} "
            f"({k} {key_type}, row_hash varchar)"
        )


def publish(
    con: duckdb.DuckDBPyConnection, defs: Definitions, full: bool
) -> dict[str, dict[str, int]]:
    """Make the state describe this build (inside the publish transaction). Returns, per
    relation, how many records were new, changed and gone."""
    key = defs.models[0].key
    k = exp.to_identifier(key, quoted=True).sql("duckdb")
    plan = f"{AUDIT}.{inc.PLAN}"
    if store.table_exists(con, AUDIT, inc.PLAN):
        con.execute(f"delete from {_table('scorers')}")
        con.execute(
            f"insert into {_table('scorers')} select model_name, role, scorer_sha from {plan}"
        )
    changed = {}
    for rel in relations(defs):
        name = inc.changes_name(rel)
        if not store.table_exists(con, AUDIT, name):
            continue
        rows, changes = _table(inc.rows_name(rel)), f"{AUDIT}.{exp.to_identifier(name).sql()}"
        if full:
            con.execute(f"delete from {rows}")
        else:
            con.execute(f"delete from {rows} where {k} in (select {k} from {changes})")
        con.execute(
            f"insert into {rows} select {k}, row_hash from {changes} where change <> 'gone'"
        )
        counts = dict(con.execute(f"select change, count(*) from {changes} group by 1").fetchall())
        changed[rel] = {c: counts.get(c, 0) for c in ("new", "changed", "gone")}
    return changed


def scope(con: duckdb.DuckDBPyConnection, defs: Definitions, full: bool) -> dict:
    """Per published table, a condition (row alias `{t}`) true for every row this build can
    have changed: records of a changes table, and every row of a scorer that rescored all
    (`scores`), or of any scorer (`winners`). None: every row (a full refresh)."""
    if full or not store.table_exists(con, AUDIT, inc.PLAN):
        return {"scores": None, "winners": None}
    k = exp.to_identifier(defs.models[0].key, quoted=True).sql("duckdb")
    names = [inc.changes_name(r) for r in relations(defs)]
    if not all(store.table_exists(con, AUDIT, n) for n in names):
        return {"scores": None, "winners": None}
    changed = " union all ".join(
        f"select {k} from {AUDIT}.{exp.to_identifier(n).sql()}" for n in names
    )
    keys = "{t}." + k + f" in ({changed})"
    rescored = (
        f"exists (select 1 from {AUDIT}.{inc.PLAN} as plan where plan.rescore_all "
        "and plan.model_name = {t}.model_name and plan.role = {t}.role)"
    )
    everything = con.execute(f"select count(*) from {AUDIT}.{inc.PLAN} where rescore_all")
    return {
        "scores": f"{keys} or {rescored}",
        "winners": None if everything.fetchone()[0] else keys,
    }


def merge_scores(con: duckdb.DuckDBPyConnection, where: str | None, published: str) -> bool:
    """Publish audit.scores into `published` (schema.table) by replacing only the rows this
    build can have changed (`where`, from `scope`) and those of scorers no longer scored:
    the same rows as a copy, at the cost of the change. False when it cannot (a first
    build, a full refresh, other columns): the caller copies the whole table."""
    schema, _, name = published.partition(".")
    if where is None or not store.table_exists(con, schema, name):
        return False
    if store.relation_columns(con, published) != store.relation_columns(con, f"{AUDIT}.scores"):
        return False
    con.execute(
        f"delete from {published} as p where ({where.format(t='p')}) or not exists ("
        f"select 1 from {AUDIT}.{inc.PLAN} as plan "
        "where plan.model_name = p.model_name and plan.role = p.role)"
    )
    con.execute(
        f"insert into {published} select * from {AUDIT}.scores as a where ({where.format(t='a')})"
    )
    return True


def unit_tested(dbt_dir: Path, macro_dirs: list[Path]) -> str:
    """The sha256 of everything a dbt unit test can depend on: every model and yml of the
    project (the team's own unit tests included, not only mlsm's), its macros, its
    dbt_project.yml and package pins, mlsm's macro package, and the dbt and adapter
    versions. Equal to the last publication's, the tests would run the same SQL on the same
    fixed rows again, so a build leaves them out (dbt's own advice: unit tests belong where
    the code changes, not in every production run)."""
    h = hashlib.sha256()
    for package in ("dbt-core", "dbt-duckdb", "dbt-postgres", "duckdb"):
        try:
            h.update(f"{package}=={metadata.version(package)}\n".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{package} absent\n".encode())
    # Named by their base's place in this list and their path below it: a project moved
    # elsewhere hashes the same, and a file moved from models/ to macros/ does not.
    bases = [dbt_dir, dbt_dir / "models", dbt_dir / "macros", *macro_dirs]
    files = [(0, dbt_dir / n) for n in ("dbt_project.yml", "packages.yml", "package-lock.yml")]
    for i, base in enumerate(bases[1:], 1):
        files += [(i, p) for p in sorted(base.rglob("*")) if p.is_file()]
    for i, f in files:
        if f.is_file():
            h.update(f"{i}:{f.relative_to(bases[i]).as_posix()}\n".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def unit_tests_passed(con: duckdb.DuckDBPyConnection) -> str | None:
    """The `unit_tested` sha of the last publication, whose unit tests passed."""
    if not store.table_exists(con, STATE, "unit_tests"):
        return None
    row = con.execute(f"select tested_sha from {_table('unit_tests')}").fetchone()
    return row[0] if row else None


def record_unit_tests(con: duckdb.DuckDBPyConnection, sha: str) -> None:
    """Inside the publish transaction: its build passed (or skipped, as unchanged) them."""
    con.execute(f"delete from {_table('unit_tests')}")
    con.execute(f"insert into {_table('unit_tests')} values (?)", [sha])

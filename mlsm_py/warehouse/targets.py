"""The warehouse a project runs on, chosen by dbt target (docs/decisions/0023-targets.md).

mlsm reads the project's dbt profile, rendered by dbt itself (env_var() included), so mlsm and
dbt always talk to the same database. A `Target` knows, for its adapter: the sqlglot dialect,
how to open a connection for mlsm's own SQL (registry, publication, history), the parity
engine, and whether dbt can run the generated Python models there. The SQL mlsm writes for
itself is written once, in DuckDB's dialect, and transpiled by sqlglot for the other targets
(`connection.SqlConnection`); what cannot be transpiled (replacing a table, loading one from
Arrow, creating the database) is a method each target overrides.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsm_py.errors import MlsmError

# pg_advisory_lock key of mlsm's run lock: "mlsm" in ASCII.
_LOCK_KEY = 0x6D6C736D
# The dbt adapters a project runs on (Spark: not yet, see the decision record).
KINDS = ("duckdb", "postgres")


@dataclass
class Target:
    """DuckDB, the embedded default: the warehouse is one file, `state` itself."""

    name: str
    settings: dict
    state: Path  # the local anchor: the DuckDB file, or the state directory's stem
    _engine: Any = field(default=None, repr=False)

    kind = "duckdb"
    dialect = "duckdb"
    # dbt-duckdb runs a generated Python model in the dbt process (docs/decisions/0007).
    python_route = True
    # One writer process at a time, so readers get their own copy (docs/decisions/0016).
    readers_copy = True

    def describe(self) -> str:
        return f"DuckDB file {self.state}"

    def ensure_database(self) -> bool:
        return False  # connecting creates the file

    def exists(self) -> bool:
        return self.state.is_file()

    def connect(self, read_only: bool = False) -> Any:
        import duckdb

        if not read_only:
            self.state.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(self.state), read_only=read_only)

    def engine(self, con: Any):
        """The parity engine over an open connection."""
        from mlsm_py.warehouse.engines import DuckDBEngine

        return DuckDBEngine(con)

    def replace_table(self, con: Any, name: str, select_sql: str) -> list[str]:
        """Statements that replace table `name` with the rows of `select_sql`, inside the
        caller's transaction."""
        return [f"create or replace table {name} as {select_sql}"]

    def load_arrow(self, con: Any, schema: str, name: str, table: Any) -> None:
        """Create or replace `schema.name` with an Arrow table, inside the caller's
        transaction."""
        con.execute(f'create schema if not exists "{schema}"')
        con.register("__mlsm_load", table)
        try:
            con.execute(f'create or replace table "{schema}"."{name}" as select * from __mlsm_load')
        finally:
            con.unregister("__mlsm_load")


class PostgresTarget(Target):
    """PostgreSQL through psycopg2; the registry, audit and published schemas live in the
    database the profile names. DDL is transactional here, so publication stays one
    transaction."""

    kind = "postgres"
    dialect = "postgres"
    python_route = False  # dbt-postgres has no Python models
    readers_copy = False  # readers query published.* beside the writers (MVCC)

    def dsn(self) -> str:
        s = self.settings
        parts = {
            "host": s.get("host"),
            "port": s.get("port"),
            "user": s.get("user"),
            "password": s.get("password") or s.get("pass"),
            "dbname": s.get("dbname") or s.get("database"),
        }
        return " ".join(f"{k}={_dsn_value(v)}" for k, v in parts.items() if v not in (None, ""))

    def describe(self) -> str:
        s = self.settings
        db = s.get("dbname") or s.get("database")
        return f"PostgreSQL database {db} on {s.get('host')}:{s.get('port')}"

    def connect(self, read_only: bool = False) -> Any:
        import psycopg2

        from mlsm_py.warehouse.connection import SqlConnection

        try:
            raw = psycopg2.connect(self.dsn(), connect_timeout=10)
        except psycopg2.OperationalError as e:
            first = (str(e).strip().splitlines() or ["no detail"])[0]
            raise MlsmError(
                f"cannot connect to {self.describe()} (dbt target {self.name!r}): {first}"
            ) from None
        raw.autocommit = True  # explicit BEGIN/COMMIT in store.transaction
        # sum()/avg() of integers are NUMERIC here, DOUBLE on DuckDB: read them as floats, so
        # every caller sees the numbers it sees on DuckDB.
        ext = psycopg2.extensions
        as_float = ext.new_type(ext.DECIMAL.values, "MLSM_FLOAT", _float_or_none)
        ext.register_type(as_float, raw)
        if read_only:
            raw.set_session(readonly=True, autocommit=True)
        return SqlConnection(raw, self.dialect)

    def ensure_database(self) -> bool:
        """Create the profile's database if the server lacks it (`mlsm demo`); True if
        created. Other verbs never create one: a mistyped name must not look like an empty
        warehouse."""
        import psycopg2
        from psycopg2 import sql

        try:
            psycopg2.connect(self.dsn(), connect_timeout=10).close()
            return False
        except psycopg2.OperationalError as e:
            if "does not exist" not in str(e):
                first = (str(e).strip().splitlines() or ["no detail"])[0]
                raise MlsmError(
                    f"cannot connect to {self.describe()} (dbt target {self.name!r}): {first}"
                ) from None
        admin = dict(self.settings, dbname="postgres", database="postgres")
        con = psycopg2.connect(type(self)(self.name, admin, self.state).dsn(), connect_timeout=10)
        con.autocommit = True
        try:
            name = self.settings.get("dbname") or self.settings.get("database")
            con.cursor().execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        finally:
            con.close()
        return True

    @contextlib.contextmanager
    def advisory_lock(self, command: str) -> Iterator[None]:
        """One mlsm run per database, whichever machine runs it: a session-level advisory
        lock, held by a connection of its own and released by the server if that connection
        dies (SIGKILL included)."""
        from mlsm_py.flow.lock import LockedError

        con = self.connect()
        try:
            got = con.execute("select pg_try_advisory_lock(?)", [_LOCK_KEY]).fetchone()[0]
            if not got:
                raise LockedError(
                    f"another mlsm run holds {self.describe()} (its advisory lock {_LOCK_KEY}); "
                    f"nothing was changed by `mlsm {command}`. Try again when it has finished"
                )
            yield
        finally:
            con.close()  # closing the session releases the lock

    def exists(self) -> bool:
        from mlsm_py.registry.schema import SCHEMA

        con = self.connect()
        try:
            q = "select count(*) from information_schema.schemata where schema_name = ?"
            return bool(con.execute(q, [SCHEMA]).fetchone()[0])
        finally:
            con.close()

    def engine(self, con: Any):
        # One session for the run's gates (its temp tables are per session).
        if self._engine is None:
            from mlsm_py.warehouse.engines import PostgresEngine

            self._engine = PostgresEngine(self.dsn())
        return self._engine

    def load_arrow(self, con: Any, schema: str, name: str, table: Any) -> None:
        from mlsm_py.registry import store
        from mlsm_py.warehouse.engines import _pg_type, arrow_rows

        cols = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in table.schema)
        con.execute(f'create schema if not exists "{schema}"')
        have = [c for c, _ in store.relation_columns(con, f"{schema}.{name}")]
        if have and have != table.column_names:
            raise MlsmError(
                f"{schema}.{name} exists with columns {have}; the new data has "
                f"{table.column_names}. Drop it (and the views reading it) first"
            )
        if have:  # views (dbt's staging) read it: empty it rather than drop it
            con.execute(f'truncate table "{schema}"."{name}"')
        else:
            con.execute_native(f'create table "{schema}"."{name}" ({cols})')
        con.copy_rows(
            f'"{schema}"."{name}"', [f'"{c}"' for c in table.column_names], arrow_rows(table)
        )

    def replace_table(self, con: Any, name: str, select_sql: str) -> list[str]:
        # No CREATE OR REPLACE TABLE; drop + create is atomic inside the transaction.
        return [f"drop table if exists {name}", f"create table {name} as {select_sql}"]


def _float_or_none(value: str | None, _cur: Any) -> float | None:
    return None if value is None else float(value)


def _dsn_value(v: Any) -> str:
    text = str(v)
    if text and all(c not in text for c in " '\\"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_CLASSES = {"duckdb": Target, "postgres": PostgresTarget}


def profile_outputs(dbt_dir: Path, render: bool = True) -> tuple[str, dict[str, dict]]:
    """(default target, {target name: settings}) of the project's dbt profile, rendered by
    dbt (env_var() included) unless `render` is False."""
    import yaml

    path = _profiles_file(dbt_dir)
    if path is None:
        return "", {}
    raw = yaml.safe_load(path.read_text()) or {}
    profile_name = _profile_name(dbt_dir)
    if profile_name not in raw:
        raise MlsmError(f"{path} has no profile {profile_name!r} (dbt_project.yml names it)")
    profile = raw[profile_name]
    if not render:
        return str(profile.get("target", "")), profile.get("outputs", {}) or {}
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    set_invocation_context(dict(os.environ))  # dbt's env_var() reads it
    rendered = ProfileRenderer({}).render_data(profile)
    return rendered.get("target", ""), rendered.get("outputs", {})


def _needs_rendering(name: str | None, default: str, outputs: dict) -> bool:
    """Whether the chosen output is anything but a plain DuckDB one. A DuckDB target needs no
    settings (mlsm hands dbt the file), and importing dbt's renderer costs ~2 s a command."""
    chosen = name or default
    if "{{" in chosen or chosen not in outputs:
        return True
    kind = str((outputs[chosen] or {}).get("type", ""))
    return "{{" in kind or kind != "duckdb"


def _profiles_file(dbt_dir: Path) -> Path | None:
    """The profiles.yml dbt reads: the project's own (mlsm passes --profiles-dir then), else
    $DBT_PROFILES_DIR's, else ~/.dbt's."""
    for d in (dbt_dir, os.environ.get("DBT_PROFILES_DIR"), Path.home() / ".dbt"):
        if d and (Path(d) / "profiles.yml").is_file():
            return Path(d) / "profiles.yml"
    return None


def _profile_name(dbt_dir: Path) -> str:
    import yaml

    doc = yaml.safe_load((dbt_dir / "dbt_project.yml").read_text()) or {}
    return str(doc.get("profile", ""))


def resolve(dbt_dir: Path, name: str | None, duckdb_file: Path, env: dict[str, str]) -> Target:
    """The target `name` (default: the profile's) of the project, its settings rendered with
    `env` set as mlsm sets it for dbt."""
    default, outputs = profile_outputs(dbt_dir, render=False)
    if _needs_rendering(name, default, outputs):
        from mlsm_py.dbt.runner import environment

        with environment(env):  # as mlsm sets it for dbt
            default, outputs = profile_outputs(dbt_dir)
    chosen = name or default
    if not outputs and not name:  # no profile to read: dbt's own default, a DuckDB file
        return Target("", {"type": "duckdb"}, duckdb_file)
    if chosen not in outputs:
        known = ", ".join(sorted(outputs)) or "none"
        raise MlsmError(
            f"dbt target {chosen!r} is not in {dbt_dir / 'profiles.yml'}; its targets: {known}"
        )
    settings = dict(outputs[chosen])
    kind = str(settings.get("type", ""))
    if kind == "spark":
        raise MlsmError(
            f"dbt target {chosen!r} is a Spark target: Spark scores compiled SQL "
            "(to_sql(..., dialect='spark')) but is not a project warehouse yet (no row updates "
            "or transactions for the registry; docs/decisions/0023-targets.md). Use duckdb or "
            "postgres"
        )
    if kind not in KINDS:
        raise MlsmError(
            f"dbt target {chosen!r} is a {kind!r} target; mlsm runs on {', '.join(KINDS)}"
        )
    cls = _CLASSES[kind]
    # DuckDB's warehouse is the file; elsewhere the local state (artifacts, the serving
    # manifest, the run lock) sits under warehouse/ named after the target.
    state = duckdb_file if kind == "duckdb" else duckdb_file.parent / chosen
    return cls(chosen, settings, state)

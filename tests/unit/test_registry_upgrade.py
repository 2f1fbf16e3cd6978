"""A registry created by an older mlsm gains the columns a newer one declares when it is
opened; its rows stay, the new columns NULL."""

from __future__ import annotations

import duckdb

from mlsm_py.registry import schema, store


def test_an_older_registry_gains_new_columns_and_keeps_its_rows(tmp_path):
    wh = tmp_path / "old.duckdb"
    con = duckdb.connect(str(wh))
    old = [(n, t) for n, t in schema.columns("fits") if n != "validation_from"]
    con.execute(f"create schema {schema.SCHEMA}")
    con.execute(f"create table {schema.SCHEMA}.fits ({', '.join(f'{n} {t}' for n, t in old)})")
    con.execute(f"insert into {schema.SCHEMA}.fits (fit_id, model_name) values ('f1', 'lead_a')")
    con.close()
    con = store.connect(wh)
    try:
        cols = [r[0] for r in con.execute(f"describe {schema.SCHEMA}.fits").fetchall()]
        assert "validation_from" in cols
        assert con.execute(
            f"select fit_id, model_name, validation_from from {schema.SCHEMA}.fits"
        ).fetchall() == [("f1", "lead_a", None)]
        # A second open changes nothing.
        assert schema.upgrades({"fits": set(cols)}) == []
    finally:
        con.close()

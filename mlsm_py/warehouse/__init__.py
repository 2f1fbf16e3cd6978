"""Where SQL runs: the engines (DuckDB, PostgreSQL, Spark) the gate and the tests talk to."""

"""A merge of few rows into a large target matches keys by index probes instead of scanning
the whole target; a large merge keeps the planner's choice. Both give the source's rows."""

from __future__ import annotations

from pgflow.config.model import StrategySpec, TableName
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load

SOURCE = TableName("public", "orders")
TARGET = TableName("landing", "orders")
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
PROBES = "SET LOCAL enable_hashjoin = off"
SAME = "SELECT id, v FROM {} ORDER BY id"


def test_few_staged_rows_use_index_probes_and_many_do_not(source_uri: str, sink_uri: str):
    execute(
        source_uri,
        "CREATE TABLE orders (id int PRIMARY KEY, v text);"
        "INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 10000) g",
    )
    first = run_load(source_uri, sink_uri, SOURCE, TARGET, MERGE)  # creates and analyzes
    assert PROBES not in first.statements

    # 1% of the rows come again, changed (a table of them stands for an incremental read).
    execute(
        source_uri,
        "CREATE TABLE changed (id int PRIMARY KEY, v text);"
        "INSERT INTO changed SELECT id, v || '!' FROM orders WHERE id % 100 = 0;"
        "UPDATE orders SET v = v || '!' WHERE id % 100 = 0",
    )
    few = run_load(source_uri, sink_uri, TableName("public", "changed"), TARGET, MERGE)
    assert few.rows == 100 and PROBES in few.statements

    many = run_load(source_uri, sink_uri, SOURCE, TARGET, MERGE)  # every row: a scan is right
    assert many.rows == 10000 and PROBES not in many.statements
    assert fetch(sink_uri, SAME.format("landing.orders")) == fetch(
        source_uri, SAME.format("orders")
    )

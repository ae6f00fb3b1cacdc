"""Two transactions creating the same partition at once, below pgflow's per-target lock (which
serializes whole loads): the second waits for the first, then finds its partition."""

from __future__ import annotations

import threading
import time

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sinks.postgres.create_partitions import prepare_partitions
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import describe_table
from pgflow_tests.sinks.postgres.conftest import execute, fetch

TARGET = TableName("landing", "events")


def context(conn: psycopg.Connection, staging: str) -> ApplyContext:
    info = describe_table(conn, TARGET)
    return ApplyContext(
        SqlLog(conn),
        TARGET,
        TableName("landing", staging),
        ("id", "d"),
        StrategySpec(mode="incremental_append", create_partitions=True),
        info,
        info,
    )


def test_the_second_creator_waits_and_finds_the_partition(sink_uri: str) -> None:
    execute(
        sink_uri,
        "CREATE SCHEMA landing;"
        " CREATE TABLE landing.events (id int, d date) PARTITION BY RANGE (d);"
        " CREATE TABLE landing.events_202401 PARTITION OF landing.events"
        " FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');"
        " CREATE TABLE landing.stage_a AS SELECT 1 AS id, date '2024-08-08' AS d;"
        " CREATE TABLE landing.stage_b AS SELECT 2 AS id, date '2024-08-20' AS d;",
    )
    created: dict[str, list[str]] = {}
    first_created = threading.Event()

    with psycopg.connect(sink_uri) as first, psycopg.connect(sink_uri) as second:
        created["first"] = prepare_partitions(context(first, "stage_a"))
        first_created.set()

        def run_second() -> None:
            created["second"] = prepare_partitions(context(second, "stage_b"))
            second.commit()

        thread = threading.Thread(target=run_second)
        thread.start()
        time.sleep(1.0)
        assert "second" not in created  # waiting for the first transaction's lock
        waiting = fetch(
            sink_uri,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'landing.events'::regclass",
        )
        assert waiting == [(1,)]
        first.commit()
        thread.join(30)

    assert created == {"first": ["landing.events_202408"], "second": []}
    assert fetch(
        sink_uri,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'landing.events'::regclass",
    ) == [(2,)]

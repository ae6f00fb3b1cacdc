"""Time-partitioned partition_replace assets: a partition, or a backfill's range, replaces
exactly its slice of the target, through `dagster asset materialize` and the Dagster API."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow_tests.bindings.conftest import DagsterSetup
from pgflow_tests.bindings.test_definitions_cli import instance, materialize, rows
from pgflow_tests.pg import execute

DAILY = """
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: events}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: events}
  strategy: {mode: partition_replace, partition_column: happened_at}
partitions: {type: daily, start: 2026-01-01}
"""
EVENTS = """
CREATE TABLE events (id int PRIMARY KEY, happened_at timestamptz NOT NULL, body text);
INSERT INTO events
SELECT g, '2026-01-01'::timestamptz + (g % 5) * interval '1 day' + g * interval '1 minute', 'v1'
FROM generate_series(1, 500) g;
"""
BY_DAY = (
    "SELECT (happened_at AT TIME ZONE 'UTC')::date::text, count(*), "
    "count(*) FILTER (WHERE body = 'v2') FROM {} GROUP BY 1 ORDER BY 1"
)


def write_spec(setup: DagsterSetup, text: str) -> None:
    for path in setup.specs.glob("*.yaml"):
        path.unlink()
    (setup.specs / "events.yaml").write_text(text)


def test_a_partition_and_a_backfill_range_replace_exactly_their_slices(
    dagster_setup: DagsterSetup,
) -> None:
    setup = dagster_setup
    execute(setup.source_uri, EVENTS)
    write_spec(setup, DAILY)

    one = materialize(setup, "landing/events", "--partition", "2026-01-02")
    assert one.returncode == 0, one.stderr[-3000:]
    assert rows(setup.sink_uri, BY_DAY.format("landing.events")) == [("2026-01-02", 100, 0)]

    # Days 2, 3 and 4 change at the source; a backfill of days 2..3 reloads those two only.
    execute(
        setup.source_uri,
        "UPDATE events SET body = 'v2' WHERE happened_at >= '2026-01-02' "
        "AND happened_at < '2026-01-05'; DELETE FROM events WHERE id IN (2, 3)",
    )
    both = materialize(setup, "landing/events", "--partition-range", "2026-01-01...2026-01-03")
    assert both.returncode == 0, both.stderr[-3000:]
    assert rows(setup.sink_uri, BY_DAY.format("landing.events")) == [
        ("2026-01-01", 100, 0),
        ("2026-01-02", 100, 100),
        ("2026-01-03", 99, 99),  # id 2 was deleted at the source: gone from its slice too
    ]
    same = "SELECT id, happened_at, body FROM {} WHERE happened_at < '2026-01-04' ORDER BY id"
    assert rows(setup.sink_uri, same.format("landing.events")) == rows(
        setup.source_uri, same.format("events")
    )

    # Each run is one materialization of its partitions, with the slice in its metadata.
    with instance(setup) as inst:
        key = dg.AssetKey(["landing", "events"])
        assert inst.get_materialized_partitions(key) == {"2026-01-01", "2026-01-02", "2026-01-03"}
        event = inst.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.metadata["pgflow/partition_slice"].value == (
            "[2026-01-01T00:00:00+00:00, 2026-01-04T00:00:00+00:00) of happened_at"
        )


def test_an_emptied_day_is_emptied_in_the_target(dagster_setup: DagsterSetup) -> None:
    setup = dagster_setup
    execute(setup.source_uri, EVENTS)
    write_spec(setup, DAILY)
    assert materialize(setup, "landing/events", "--partition", "2026-01-03").returncode == 0
    execute(setup.source_uri, "DELETE FROM events WHERE happened_at::date = '2026-01-03'")
    again = materialize(setup, "landing/events", "--partition", "2026-01-03")
    assert again.returncode == 0, again.stderr[-3000:]
    assert rows(setup.sink_uri, "SELECT count(*) FROM landing.events") == [(0,)]


MONTHLY_LOCAL = """
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: readings}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: readings}
  strategy: {mode: partition_replace, partition_column: taken_at}
partitions: {type: monthly, start: 2026-01-01, timezone: Europe/Berlin}
"""


def test_monthly_partitions_of_a_timestamp_column_use_wall_clock_time(
    dagster_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = dagster_setup
    # Around the month boundary, in Berlin wall-clock time (timestamp without time zone).
    execute(
        setup.source_uri,
        "CREATE TABLE readings (id int PRIMARY KEY, taken_at timestamp NOT NULL);"
        "INSERT INTO readings VALUES (1, '2026-01-31 23:30'), (2, '2026-02-01 00:00'),"
        " (3, '2026-02-28 23:59:59'), (4, '2026-03-01 00:00')",
    )
    write_spec(setup, MONTHLY_LOCAL)
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    project = load_project(setup.specs)
    defs = build_definitions(project)
    asset = defs.resolve_assets_def(dg.AssetKey(["landing", "readings"]))
    partitions = asset.partitions_def
    assert isinstance(partitions, dg.MonthlyPartitionsDefinition)
    assert partitions.timezone == "Europe/Berlin"
    window = partitions.time_window_for_partition_key("2026-02-01")
    assert window.start.astimezone(UTC) == datetime(2026, 1, 31, 23, tzinfo=UTC)

    with dg.instance_for_test() as inst:
        # The resolved asset carries its resources (the real IO manager and connections).
        result = dg.materialize([asset], partition_key="2026-02-01", instance=inst)
    assert result.success
    assert rows(setup.sink_uri, "SELECT id FROM landing.readings ORDER BY id") == [(2,), (3,)]


def test_partitions_on_a_column_that_is_not_a_time_fail_naming_the_field(
    dagster_setup: DagsterSetup,
) -> None:
    setup = dagster_setup
    execute(setup.source_uri, "CREATE TABLE events (id int PRIMARY KEY, happened_at text)")
    write_spec(setup, DAILY)
    run = materialize(setup, "landing/events", "--partition", "2026-01-02")
    assert run.returncode != 0
    assert "sink.strategy.partition_column" in run.stderr + run.stdout
    assert "time partitions need a date, timestamp or timestamptz column" in run.stderr + run.stdout
    assert rows(setup.sink_uri, "SELECT to_regclass('landing.events') IS NULL") == [(True,)]


MONTHLY_TARGET = """
CREATE SCHEMA landing;
CREATE TABLE landing.events (id int, happened_at timestamptz NOT NULL, body text,
  PRIMARY KEY (happened_at, id)) PARTITION BY RANGE (happened_at);
CREATE TABLE landing."events 2026-01" PARTITION OF landing.events
  FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2026-02-01 00:00+00');
"""


def test_a_daily_partition_into_a_monthly_partitioned_target_replaces_only_its_day(
    dagster_setup: DagsterSetup,
) -> None:
    # The table's partition (January) is wider than the Dagster partition (one day): the run
    # replaces exactly its day, by delete/insert, and keeps the month's other days.
    setup = dagster_setup
    execute(setup.source_uri, EVENTS)
    execute(setup.sink_uri, MONTHLY_TARGET)
    execute(
        setup.sink_uri,
        "INSERT INTO landing.events SELECT g, '2026-01-01'::timestamptz + (g % 5) * interval"
        " '1 day' + g * interval '1 minute', 'old' FROM generate_series(1, 500) g",
    )
    write_spec(setup, DAILY)

    run = materialize(setup, "landing/events", "--partition", "2026-01-02")

    assert run.returncode == 0, run.stderr[-3000:]
    by_body = (
        "SELECT (happened_at AT TIME ZONE 'UTC')::date::text, body, count(*) FROM landing.events"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert rows(setup.sink_uri, by_body) == [
        ("2026-01-01", "old", 100),
        ("2026-01-02", "v1", 100),
        ("2026-01-03", "old", 100),
        ("2026-01-04", "old", 100),
        ("2026-01-05", "old", 100),
    ]


def test_values_without_a_partition_fail_naming_them_and_write_nothing(
    dagster_setup: DagsterSetup,
) -> None:
    setup = dagster_setup
    execute(setup.source_uri, EVENTS)
    execute(setup.source_uri, "INSERT INTO events VALUES (501, '2026-02-03 04:05+00', 'feb')")
    execute(setup.sink_uri, MONTHLY_TARGET)
    execute(setup.sink_uri, "INSERT INTO landing.events VALUES (1, '2026-01-09 00:00+00', 'old')")
    write_spec(setup, DAILY.replace("partitions: {type: daily, start: 2026-01-01}\n", ""))

    run = materialize(setup, "landing/events")

    assert run.returncode != 0
    output = run.stderr + run.stdout
    assert (
        "the source has rows whose happened_at has no partition in landing.events:"
        " '2026-02-03 04:05:00+00'; nothing was written. The partition must exist before the"
        " load" in output
    )
    assert "PartitionMissing" not in output and "Traceback" not in output
    assert rows(setup.sink_uri, "SELECT id, body FROM landing.events") == [(1, "old")]

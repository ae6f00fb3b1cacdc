"""create_partitions: loads into partitioned targets create the partitions their values need,
in the load's transaction; without it, values with no partition fail the load before writing.

Real loads (load_table) from a source database into a sink database whose target each test
partitions itself; the outcome is read back from the catalog and the rows.
"""

from __future__ import annotations

import threading

import pytest
from psycopg.conninfo import make_conninfo

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.create_partitions import CreatePartitionsRefused, PartitionsMissing
from pgflow.sinks.postgres.partition_ranges import IntervalUnknown
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load

SOURCE = TableName("public", "events")
TARGET = TableName("landing", "events")


def append(create: bool = True, interval: str | None = None) -> StrategySpec:
    return StrategySpec(
        mode="incremental_append",
        create_partitions=create,
        partition_interval=interval,  # type: ignore[arg-type]
    )


def partitions(uri: str, table: str = "landing.events") -> dict[str, str]:
    """Partition name -> its bound, as Postgres shows it (in UTC)."""
    rows = fetch(
        make_conninfo(uri, options="-c TimeZone=UTC -c DateStyle=ISO"),
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (table,),
    )
    return dict(rows)


def placed(uri: str, order: str = "id") -> list[tuple]:
    """Each target row's id and the partition that holds it."""
    return fetch(uri, f"SELECT id, tableoid::regclass::text FROM landing.events ORDER BY {order}")


def source(uri: str, column_ddl: str, rows: str) -> None:
    execute(
        uri, f"CREATE TABLE public.events (id int, {column_ddl}); INSERT INTO public.events {rows}"
    )


MONTHLY = """
CREATE SCHEMA landing;
CREATE TABLE landing.events (id int, d date NOT NULL, CHECK (id > 0)) PARTITION BY RANGE (d);
CREATE TABLE landing.events_202401 PARTITION OF landing.events
  FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE landing.events_202402 PARTITION OF landing.events
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
"""


def test_monthly_partitions_created_across_the_year_end(source_uri: str, sink_uri: str) -> None:
    source(
        source_uri,
        "d date",
        "VALUES (1, '2024-01-15'), (2, '2024-12-31'), (3, '2025-01-01'), (4, '2024-02-29')",
    )
    execute(sink_uri, MONTHLY)
    result = run_load(source_uri, sink_uri, SOURCE, TARGET, append())
    assert result.rows == 4
    assert partitions(sink_uri) == {
        "events_202401": "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')",
        "events_202402": "FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')",
        "events_202412": "FOR VALUES FROM ('2024-12-01') TO ('2025-01-01')",
        "events_202501": "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')",
    }
    assert placed(sink_uri) == [
        (1, "landing.events_202401"),
        (2, "landing.events_202412"),
        (3, "landing.events_202501"),
        (4, "landing.events_202402"),
    ]


def test_without_create_partitions_the_load_fails_naming_values(
    source_uri: str, sink_uri: str
) -> None:
    days = ", ".join(f"({i}, '2024-0{3 + i // 4}-{10 + i:02d}')" for i in range(7))
    source(source_uri, "d date", f"VALUES {days}, (100, '2024-01-05')")
    execute(sink_uri, MONTHLY)
    with pytest.raises(PartitionsMissing) as caught:
        run_load(source_uri, sink_uri, SOURCE, TARGET, append(create=False))
    message = str(caught.value)
    assert "has no partition in landing.events" in message
    assert "'2024-03-10', '2024-03-11', '2024-03-12', '2024-03-13', '2024-04-14'" in message
    assert "and 2 more" in message
    assert "create_partitions: true" in message
    assert fetch(sink_uri, "SELECT count(*) FROM landing.events") == [(0,)]
    assert set(partitions(sink_uri)) == {"events_202401", "events_202402"}


def test_a_failed_load_leaves_no_new_partition(source_uri: str, sink_uri: str) -> None:
    # id -1 breaks the target's CHECK after the partition for May was created.
    source(source_uri, "d date", "VALUES (1, '2024-05-02'), (-1, '2024-05-03')")
    execute(sink_uri, MONTHLY)
    with pytest.raises(Exception, match="check constraint"):
        run_load(source_uri, sink_uri, SOURCE, TARGET, append())
    assert set(partitions(sink_uri)) == {"events_202401", "events_202402"}


def test_timestamptz_days_across_daylight_saving(source_uri: str, sink_uri: str) -> None:
    """Berlin days: the spring day has 23 hours, the autumn day 25."""
    berlin = make_conninfo(sink_uri, options="-c TimeZone=Europe/Berlin")
    execute(
        berlin,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, at timestamptz)"
        " PARTITION BY RANGE (at);"
        " CREATE TABLE landing.events_20240329 PARTITION OF landing.events"
        " FOR VALUES FROM ('2024-03-29 00:00') TO ('2024-03-30 00:00');"
        " CREATE TABLE landing.events_20240330 PARTITION OF landing.events"
        " FOR VALUES FROM ('2024-03-30 00:00') TO ('2024-03-31 00:00')",
    )
    source(
        source_uri,
        "at timestamptz",
        "VALUES (1, '2024-03-31 01:30+01'), (2, '2024-03-31 23:30+02'),"
        " (3, '2024-10-27 02:30+01'), (4, '2024-10-26 23:59+02')",
    )
    run_load(source_uri, berlin, SOURCE, TARGET, append())
    widths = fetch(
        berlin,
        "SELECT c.relname, (SELECT max(at) FROM landing.events e WHERE e.tableoid = c.oid)"
        "::date::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'landing.events'::regclass ORDER BY 1",
    )
    assert [w[0] for w in widths] == [
        "events_20240329",
        "events_20240330",
        "events_20240331",
        "events_20241026",
        "events_20241027",
    ]
    bounds = partitions(sink_uri)
    assert bounds["events_20240331"] == (
        "FOR VALUES FROM ('2024-03-30 23:00:00+00') TO ('2024-03-31 22:00:00+00')"
    )
    assert bounds["events_20241027"] == (
        "FOR VALUES FROM ('2024-10-26 22:00:00+00') TO ('2024-10-27 23:00:00+00')"
    )
    assert placed(sink_uri) == [
        (1, "landing.events_20240331"),
        (2, "landing.events_20240331"),
        (3, "landing.events_20241027"),
        (4, "landing.events_20241026"),
    ]


def test_timestamptz_partitions_of_another_zone_need_the_interval(
    source_uri: str, sink_uri: str
) -> None:
    berlin = make_conninfo(sink_uri, options="-c TimeZone=Europe/Berlin")
    execute(
        berlin,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, at timestamptz)"
        " PARTITION BY RANGE (at); CREATE TABLE landing.events_a PARTITION OF landing.events"
        " FOR VALUES FROM ('2024-03-29 00:00') TO ('2024-03-30 00:00')",
    )
    source(source_uri, "at timestamptz", "VALUES (1, '2024-06-01 12:00+00')")
    tokyo = make_conninfo(sink_uri, options="-c TimeZone=Asia/Tokyo")
    with pytest.raises(IntervalUnknown, match="partition_interval: day, month or year"):
        run_load(source_uri, tokyo, SOURCE, TARGET, append())
    run_load(source_uri, tokyo, SOURCE, TARGET, append(interval="day"))
    assert partitions(sink_uri)["events_20240601"] == (
        "FOR VALUES FROM ('2024-05-31 15:00:00+00') TO ('2024-06-01 15:00:00+00')"
    )


def test_bc_dates_get_yearly_partitions(source_uri: str, sink_uri: str) -> None:
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, d date)"
        " PARTITION BY RANGE (d); CREATE TABLE landing.events_2023 PARTITION OF landing.events"
        " FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')",
    )
    source(
        source_uri,
        "d date",
        "VALUES (1, '0044-03-15 BC'), (2, '0001-12-31 BC'), (3, '0001-01-01'), (4, '2023-12-31')",
    )
    run_load(source_uri, sink_uri, SOURCE, TARGET, append())
    bounds = partitions(sink_uri)
    assert bounds["events_0044_bc"] == "FOR VALUES FROM ('0044-01-01 BC') TO ('0043-01-01 BC')"
    assert bounds["events_0001_bc"] == "FOR VALUES FROM ('0001-01-01 BC') TO ('0001-01-01')"
    assert bounds["events_0001"] == "FOR VALUES FROM ('0001-01-01') TO ('0002-01-01')"
    assert placed(sink_uri) == [
        (1, "landing.events_0044_bc"),
        (2, "landing.events_0001_bc"),
        (3, "landing.events_0001"),
        (4, "landing.events_2023"),
    ]


HOSTILE = ["it's", "two words", "two_words", "Zürich", "東京", "", 'a"b', "x'); DROP TABLE y; --"]


def test_list_partitions_for_hostile_text_values(source_uri: str, sink_uri: str) -> None:
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, region text)"
        " PARTITION BY LIST (region); CREATE TABLE landing.events_eu PARTITION OF landing.events"
        " FOR VALUES IN ('eu')",
    )
    execute(source_uri, "CREATE TABLE public.events (id int, region text)")
    values = [*HOSTILE, "eu", None]
    for i, value in enumerate(values):
        execute(source_uri, "INSERT INTO public.events VALUES (%s, %s)", (i, value))
    run_load(source_uri, sink_uri, SOURCE, TARGET, append())
    # Every row is in a partition that accepts exactly its value.
    rows = fetch(
        sink_uri,
        "SELECT e.region, c.relname, pg_get_expr(c.relpartbound, c.oid)"
        " FROM landing.events e JOIN pg_class c ON c.oid = e.tableoid ORDER BY e.id",
    )
    assert [r[0] for r in rows] == values
    names = [r[1] for r in rows]
    assert len(set(names)) == len(values)  # one partition per value, none shared
    assert names[values.index("eu")] == "events_eu"
    assert names[values.index("two words")] in ("events_two_words", "events_two_words_2")
    assert names[values.index(None)] == "events_null"
    assert rows[values.index("it's")][2] == "FOR VALUES IN ('it''s')"
    assert fetch(sink_uri, "SELECT to_regclass('public.y') IS NULL") == [(True,)]


def test_default_partition_takes_values_without_create_and_blocks_with_it(
    source_uri: str, sink_uri: str
) -> None:
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, region text)"
        " PARTITION BY LIST (region); CREATE TABLE landing.events_rest PARTITION OF"
        " landing.events DEFAULT; INSERT INTO landing.events VALUES (0, 'us')",
    )
    source(source_uri, "region text", "VALUES (1, 'us')")
    run_load(source_uri, sink_uri, SOURCE, TARGET, append(create=False))  # Postgres' routing
    assert placed(sink_uri) == [(0, "landing.events_rest"), (1, "landing.events_rest")]
    with pytest.raises(CreatePartitionsRefused, match=r"DEFAULT partition .* already holds rows"):
        run_load(source_uri, sink_uri, SOURCE, TARGET, append())
    assert set(partitions(sink_uri)) == {"events_rest"}
    assert fetch(sink_uri, "SELECT count(*) FROM landing.events") == [(2,)]


def test_create_partitions_on_a_plain_target_is_refused(source_uri: str, sink_uri: str) -> None:
    execute(sink_uri, "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, d date)")
    source(source_uri, "d date", "VALUES (1, '2024-01-01')")
    with pytest.raises(CreatePartitionsRefused, match="is not a table partitioned by RANGE"):
        run_load(source_uri, sink_uri, SOURCE, TARGET, append())
    assert fetch(sink_uri, "SELECT count(*) FROM landing.events") == [(0,)]


def test_integer_range_keys_are_refused(source_uri: str, sink_uri: str) -> None:
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, n int)"
        " PARTITION BY RANGE (n); CREATE TABLE landing.events_0 PARTITION OF landing.events"
        " FOR VALUES FROM (0) TO (10)",
    )
    source(source_uri, "n int", "VALUES (1, 50)")
    with pytest.raises(CreatePartitionsRefused, match=r"key n of landing\.events is integer"):
        run_load(source_uri, sink_uri, SOURCE, TARGET, append())


@pytest.mark.parametrize("policy", ["delete_insert", "upsert"])
def test_merge_creates_partitions(source_uri: str, sink_uri: str, policy: str) -> None:
    execute(sink_uri, MONTHLY + "ALTER TABLE landing.events ADD PRIMARY KEY (d, id);")
    execute(sink_uri, "INSERT INTO landing.events VALUES (1, '2024-01-03')")
    source(source_uri, "d date", "VALUES (1, '2024-01-03'), (2, '2024-07-04')")
    strategy = StrategySpec(
        mode="incremental_merge",
        unique_key=("d", "id"),
        merge_policy=policy,  # type: ignore[arg-type]
        create_partitions=True,
        partition_interval="month",
    )
    run_load(source_uri, sink_uri, SOURCE, TARGET, strategy)
    assert placed(sink_uri) == [(1, "landing.events_202401"), (2, "landing.events_202407")]


def test_partition_replace_creates_the_partition_it_replaces(
    source_uri: str, sink_uri: str
) -> None:
    execute(sink_uri, MONTHLY + "INSERT INTO landing.events VALUES (9, '2024-01-09');")
    source(source_uri, "d date", "VALUES (1, '2024-03-03'), (2, '2024-01-02')")
    strategy = StrategySpec(mode="partition_replace", partition_column="d", create_partitions=True)
    run_load(source_uri, sink_uri, SOURCE, TARGET, strategy)
    assert placed(sink_uri) == [(1, "landing.events_202403"), (2, "landing.events_202401")]


def test_concurrent_loads_creating_the_same_partition(source_uri: str, sink_uri: str) -> None:
    execute(sink_uri, MONTHLY)
    source(source_uri, "d date", "VALUES (1, '2024-08-08'), (2, '2024-08-09')")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def load() -> None:
        try:
            start.wait()
            run_load(source_uri, sink_uri, SOURCE, TARGET, append())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert set(partitions(sink_uri)) == {"events_202401", "events_202402", "events_202408"}
    assert fetch(sink_uri, "SELECT count(*) FROM landing.events_202408") == [(4,)]

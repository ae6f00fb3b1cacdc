"""`dagster/row_count` is the rows in the target after the run (Dagster's definition), on every
path; what the run wrote is under pgflow's keys. Each test runs a second, incremental
materialization that changes fewer rows than the target holds, so the two cannot agree by
chance, and compares the metadata with rows counted in the target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable, QueryBuilder, write_deltalake

from pgflow.bindings import row_counts
from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow.config.model import TableName
from pgflow.sources.catalog import describe_table
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for

TARGET = '"landing"."Zähl Tabelle"'
KEY = dg.AssetKey(["landing", "zahl_tabelle"])
SOURCE = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {options}
"""
POSTGRES_SINK = """
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: Zähl Tabelle}}
  strategy: {{mode: incremental_merge, unique_key: [id]{extra}}}
"""
CURSOR = "{incremental_strategy: column, incremental_column: added}"
# 3 rows updated, 1 deleted, 2 inserted: a change of 6 rows on a table of 50.
CHANGES = (
    "UPDATE items SET price = price + 1, added = now() WHERE id <= 3;"
    "DELETE FROM items WHERE id = 50;"
    "INSERT INTO items (id, name, price) VALUES (101, 'new ''one''', 1), (102, 'ünï', 2)"
)


def materialize(env: Env, key: dg.AssetKey, instance: dg.DagsterInstance, **kwargs) -> dict:
    """Materialize `key` of the specs in env.specs; its metadata values."""
    defs = build_definitions(load_project(env.specs))
    result = dg.materialize([defs.resolve_assets_def(key)], instance=instance, **kwargs)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def count(uri: str, table: str, where: str = "true") -> int:
    return fetch(uri, f"SELECT count(*) FROM {table} WHERE {where}")[0][0]


def delta_count(path: Path, where: str = "true") -> int:
    """Rows in the data of the table's latest version (polars' read_delta cannot open a path
    holding a space: it reads the URL-escaped name)."""
    query = QueryBuilder().register("t", DeltaTable(str(path)))
    return pl.DataFrame(query.execute(f"SELECT count(*) FROM t WHERE {where}").read_all()).item()


def spread_cursor(env: Env) -> None:
    execute(
        env.source_uri, "UPDATE items SET added = '2026-01-01'::timestamptz + id * '1s'::interval"
    )


def test_an_incremental_merge_reports_the_rows_of_the_target(env: Env, instance) -> None:
    spread_cursor(env)
    spec = SOURCE.format(options=CURSOR) + POSTGRES_SINK.format(extra="")
    (env.specs / "p.yaml").write_text(spec)
    first = materialize(env, KEY, instance)
    assert first["dagster/row_count"] == 50

    execute(env.source_uri, CHANGES)
    second = materialize(env, KEY, instance)
    # The cursor sees the 3 updates and the 2 inserts; it cannot see the delete, so the
    # target keeps row 50: 52 rows.
    assert second["dagster/row_count"] == count(env.sink_uri, TARGET) == 52
    assert second["pgflow/rows_written"] == 5
    assert second["pgflow/row_count_from"] == "ledger"  # no scan of the target


def test_a_target_replaced_by_another_table_is_counted_not_taken_from_the_ledger(
    env: Env, instance
) -> None:
    """The ledger belongs to the table it counted: under the same name another table (here
    with 7 rows) is counted, and the load then rebuilds it and keeps a ledger again."""
    spread_cursor(env)
    (env.specs / "p.yaml").write_text(
        SOURCE.format(options=CURSOR) + POSTGRES_SINK.format(extra="")
    )
    assert materialize(env, KEY, instance)["pgflow/row_count_from"] == "ledger"
    conn_target = TableName("landing", "Zähl Tabelle")
    execute(env.sink_uri, f"DROP TABLE {TARGET}; CREATE TABLE {TARGET} (id int)")
    execute(env.sink_uri, f"INSERT INTO {TARGET} SELECT generate_series(1, 7)")
    with psycopg.connect(env.sink_uri, autocommit=True) as conn:
        counts = row_counts.postgres_counts(conn, describe_table(conn, conn_target))
    assert counts["dagster/row_count"].value == 7
    assert counts["pgflow/row_count_from"].value == "count"
    again = materialize(env, KEY, instance)  # another table: rebuilt from a full read
    assert again["dagster/row_count"] == count(env.sink_uri, TARGET) == 50
    assert again["pgflow/row_count_from"] == "ledger"


@pytest.fixture
def slot(env: Env) -> Iterator[str]:
    name = slot_name_for(env.source_uri)
    yield name
    drop_slots(env.source_uri, name)


def test_cdc_reports_the_rows_of_the_target(env: Env, instance, slot: str) -> None:
    options = f"{{incremental_strategy: cdc, slot_name: {slot}}}"
    (env.specs / "p.yaml").write_text(
        SOURCE.format(options=options) + POSTGRES_SINK.format(extra=", merge_policy: upsert")
    )
    first = materialize(env, KEY, instance)
    assert first["dagster/row_count"] == 50 and first["pgflow/snapshot_rows"] == 50

    execute(env.source_uri, CHANGES)
    second = materialize(env, KEY, instance)
    assert (second["pgflow/upserts"], second["pgflow/deletes"]) == (5, 1)
    assert second["dagster/row_count"] == count(env.sink_uri, TARGET) == 51
    assert second["pgflow/row_count_from"] == "ledger"
    assert second["pgflow/rows_written"] == 5  # rows inserted or updated; deletes are apart


DELTA_SINK = """
sink:
  type: delta
  path: {path}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


def test_a_delta_merge_reports_the_rows_of_the_table(env: Env, instance) -> None:
    spread_cursor(env)
    path = env.lake / "Zähl Tabelle"
    (env.specs / "p.yaml").write_text(
        SOURCE.format(options=CURSOR) + DELTA_SINK.format(path=f"'{path}'")
    )
    key = dg.AssetKey(["delta", "zahl_tabelle"])
    first = materialize(env, key, instance)
    assert first["dagster/row_count"] == 50

    execute(env.source_uri, CHANGES)
    second = materialize(env, key, instance)
    assert second["dagster/row_count"] == delta_count(path) == 52
    assert second["pgflow/rows_written"] == 5


DELTA_SOURCE = """
source:
  type: delta
  path: {path}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: Zähl Tabelle}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


def test_a_delta_sync_reports_the_rows_of_the_target(env: Env, instance, tmp_path: Path) -> None:
    path = tmp_path / "prices"
    prices = pl.DataFrame({"id": range(1, 51), "price": [i * 10 for i in range(1, 51)]})
    write_deltalake(str(path), prices)
    (env.specs / "p.yaml").write_text(DELTA_SOURCE.format(path=path))
    first = materialize(env, KEY, instance)
    assert first["dagster/row_count"] == 50

    changed = prices.with_columns(
        pl.when(pl.col("id") <= 3).then(pl.col("price") + 1).otherwise(pl.col("price"))
    )
    write_deltalake(str(path), changed, mode="overwrite")
    second = materialize(env, KEY, instance)
    assert second["dagster/row_count"] == count(env.sink_uri, TARGET) == 50
    assert (second["pgflow/rows_updated"], second["pgflow/rows_written"]) == (3, 3)


EVENTS = """
CREATE TABLE events (id int PRIMARY KEY, happened_at timestamptz NOT NULL, body text);
INSERT INTO events
SELECT g, '2026-01-01'::timestamptz + (g % 5) * interval '1 day' + g * interval '1 minute', 'v1'
FROM generate_series(1, 500) g;
"""
DAILY = """
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: events}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: Zähl Tabelle}
  strategy: {mode: partition_replace, partition_column: happened_at}
partitions: {type: daily, start: 2026-01-01}
"""


def test_a_time_partition_reports_its_rows_and_the_tables(env: Env, instance) -> None:
    execute(env.source_uri, EVENTS)
    (env.specs / "p.yaml").write_text(DAILY)
    materialize(env, KEY, instance, partition_key="2026-01-02")
    execute(env.source_uri, "DELETE FROM events WHERE id IN (2, 7)")  # both on 2026-01-03

    second = materialize(env, KEY, instance, partition_key="2026-01-03")
    day = "happened_at >= '2026-01-03 00:00+00' AND happened_at < '2026-01-04 00:00+00'"
    assert second["dagster/row_count"] == count(env.sink_uri, TARGET) == 198
    assert second["dagster/partition_row_count"] == count(env.sink_uri, TARGET, day) == 98
    assert second["pgflow/rows_written"] == 98


def test_a_backfill_range_does_not_claim_its_count_for_each_partition(env: Env, instance) -> None:
    """One run of 2026-01-01..03 gives each of the three partitions the same metadata: the
    range's 300 rows go under pgflow's key, not as each partition's row count."""
    execute(env.source_uri, EVENTS)
    (env.specs / "p.yaml").write_text(DAILY)
    defs = build_definitions(load_project(env.specs))
    tags = {
        "dagster/asset_partition_range_start": "2026-01-01",
        "dagster/asset_partition_range_end": "2026-01-03",
    }
    result = dg.materialize([defs.resolve_assets_def(KEY)], instance=instance, tags=tags)
    events = result.get_asset_materialization_events()
    assert sorted(e.materialization.partition for e in events) == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
    ]
    for event in events:
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        assert "dagster/partition_row_count" not in metadata
        assert metadata["pgflow/partition_range_row_count"] == 300
        assert metadata["dagster/row_count"] == count(env.sink_uri, TARGET) == 300


DAYS = """
CREATE TABLE days (id int PRIMARY KEY, "Tag" date NOT NULL);
INSERT INTO days SELECT g, date '2026-01-01' + g % 5 FROM generate_series(1, 500) g;
"""
DELTA_DAILY = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: days}}
sink:
  type: delta
  path: '{path}'
  strategy: {{mode: partition_replace, partition_column: Tag}}
partitions: {{type: daily, start: 2026-01-01}}
"""


def test_a_delta_time_partition_reports_its_rows_and_the_tables(env: Env, instance) -> None:
    execute(env.source_uri, DAYS)
    path = env.lake / "Zähl Tabelle"
    (env.specs / "p.yaml").write_text(DELTA_DAILY.format(path=path))
    key = dg.AssetKey(["delta", "zahl_tabelle"])
    materialize(env, key, instance, partition_key="2026-01-02")
    execute(env.source_uri, "DELETE FROM days WHERE id IN (2, 7)")  # both on 2026-01-03

    second = materialize(env, key, instance, partition_key="2026-01-03")
    day = "\"Tag\" = CAST('2026-01-03' AS DATE)"
    assert second["dagster/row_count"] == delta_count(path) == 198
    assert second["dagster/partition_row_count"] == delta_count(path, day) == 98
    assert second["pgflow/rows_written"] == 98


def test_a_count_past_its_time_limit_is_left_out_not_wrong(
    sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count that cannot finish in time (here: the target is locked) leaves
    `dagster/row_count` out and says why; the run's committed data stays."""
    execute(sink_uri, f"CREATE SCHEMA landing; CREATE TABLE {TARGET} AS SELECT 1 AS id")
    monkeypatch.setattr(row_counts, "COUNT_TIMEOUT_SECONDS", 0.2)
    with (
        psycopg.connect(sink_uri) as locker,
        psycopg.connect(sink_uri, autocommit=True) as conn,
    ):
        info = describe_table(conn, TableName("landing", "Zähl Tabelle"))
        assert row_counts.postgres_counts(conn, info)["dagster/row_count"].value == 1
        locker.execute(f"LOCK TABLE {TARGET} IN ACCESS EXCLUSIVE MODE")
        counts = row_counts.postgres_counts(conn, info)
    assert counts == {
        "pgflow/row_count_skipped": dg.MetadataValue.text(
            "counting the target took longer than 0.2 s; the run's data is committed, only "
            "dagster/row_count is left out"
        )
    }

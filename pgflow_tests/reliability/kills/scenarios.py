"""The strategies under test: one spec per scenario, and how its target and position are judged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgflow.config.model import TableName

TARGET = TableName("landing", "items")
PIPELINE = "kills_items"

PARTITIONED_TARGET = """
CREATE SCHEMA landing;
CREATE TABLE landing.items (
    id bigint NOT NULL, region text NOT NULL, day date NOT NULL, qty integer NOT NULL,
    price numeric(10,2), note text, updated_at timestamptz NOT NULL, PRIMARY KEY (id, region)
) PARTITION BY LIST (region);
CREATE TABLE landing.items_eu PARTITION OF landing.items FOR VALUES IN ('eu');
CREATE TABLE landing.items_us PARTITION OF landing.items FOR VALUES IN ('us');
CREATE TABLE landing.items_apac PARTITION OF landing.items FOR VALUES IN ('apac');
CREATE TABLE landing.items_latam PARTITION OF landing.items FOR VALUES IN ('latam');
"""

# What a rename-swap (exchange, shadow_swap) must carry over: a dependent view, an index.
TARGET_EXTRAS = """
CREATE VIEW landing.items_eu AS SELECT id, qty FROM landing.items WHERE region = 'eu';
CREATE INDEX items_qty ON landing.items (qty);
"""

POSTGRES_SOURCE = """source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {options}
"""
DELTA_SOURCE = """source:
  type: delta
  path: {lake}/source
  options: {{deletes: key_pass}}
"""
POSTGRES_SINK = """sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {strategy}
name: kills_items
"""
DELTA_SINK = """sink:
  type: delta
  path: {lake}/target
  strategy: {strategy}
name: kills_items
"""


@dataclass(frozen=True)
class Scenario:
    """One strategy under test: its spec, and how its target and position are judged."""

    name: str
    source: str  # "postgres" | "delta"
    sink: str  # "postgres" | "delta"
    options: str = "{}"  # source.options (Postgres sources)
    strategy: str = "{mode: full_refresh}"
    # exact: AFTER's position is one value; advances: it depends on when the run reads
    # (xmin checkpoint, CDC LSN): of the same kind and source, never behind BEFORE's, and for
    # CDC past the source change's commit.
    position_rule: str = "exact"
    # equal | superset (merges keep rows deleted at the source) | apart (checked by its test)
    source_equality: str = "equal"
    partial: bool = False  # resumable by design: committed resume points are allowed too
    exclude_columns: tuple[str, ...] = ()  # per-run values (delta sync's load timestamp)
    # run on the sink before the first load; a Delta sink's target is then loaded from the
    # landing.items it made (update, delete: modes that need a target)
    sink_ddl: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    delta_batch_rows: int | None = None  # Delta sink: Arrow batch size of the read
    cdc: bool = False
    first_load: bool = False  # BEFORE is no target at all: the kills hit its creation
    split_change: bool = False  # the source change in three transactions, not one
    target_ddl: str | None = None  # run on the sink after the first load (views, indexes)
    min_slice_blocks: int | None = None  # parallel exchange: lets the small table split

    def spec_yaml(self, lake: Path, slot: str) -> str:
        options = self.options.replace("{slot}", slot)
        if self.source == "delta":
            head = DELTA_SOURCE.format(lake=lake)
        else:
            head = POSTGRES_SOURCE.format(options=options)
        if self.sink == "delta":
            return head + DELTA_SINK.format(lake=lake, strategy=self.strategy)
        return head + POSTGRES_SINK.format(strategy=self.strategy)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("full_refresh/truncate_insert", "postgres", "postgres"),
        Scenario(
            "full_refresh/exchange",
            "postgres",
            "postgres",
            strategy="{mode: full_refresh, method: exchange}",
            target_ddl=TARGET_EXTRAS,
        ),
        Scenario(
            "full_refresh/exchange_parallel",
            "postgres",
            "postgres",
            strategy="{mode: full_refresh, method: exchange, parallelism: 3}",
            target_ddl=TARGET_EXTRAS,
            min_slice_blocks=8,  # the 4,300 rows (~75 blocks) split into 3 ranges
        ),
        Scenario(
            "merge/delete_insert",
            "postgres",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: delete_insert}",
            source_equality="superset",
        ),
        Scenario(
            "merge/upsert",
            "postgres",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
            source_equality="superset",
        ),
        Scenario(
            "merge/shadow_swap",
            "postgres",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: shadow_swap}",
            source_equality="superset",
            target_ddl=TARGET_EXTRAS,
        ),
        Scenario(
            "replace",
            "postgres",
            "postgres",
            strategy="{mode: replace, custom_predicate: \"day >= '2024-01-01'\"}",
        ),
        Scenario(
            "partition_replace/native",
            "postgres",
            "postgres",
            strategy="{mode: partition_replace, partition_column: region, native_mode: required}",
            sink_ddl=PARTITIONED_TARGET,
        ),
        Scenario(
            "partition_replace/delete_insert",
            "postgres",
            "postgres",
            strategy="{mode: partition_replace, partition_column: day}",
        ),
        Scenario(
            "column",
            "postgres",
            "postgres",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            source_equality="superset",
        ),
        Scenario(
            "column/first_load",  # a staged strategy's first load: no staging, into a new target
            "postgres",
            "postgres",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
            first_load=True,
        ),
        Scenario(
            "xmin",
            "postgres",
            "postgres",
            options="{incremental_strategy: xmin}",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
            position_rule="advances",
            source_equality="superset",
        ),
        Scenario(
            "cdc",
            "postgres",
            "postgres",
            options="{incremental_strategy: cdc, slot_name: {slot}, publication_name: {slot}}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            position_rule="advances",
            cdc=True,
        ),
        Scenario(
            "cdc/multi_batch",
            "postgres",
            "postgres",
            options="{incremental_strategy: cdc, slot_name: {slot}, publication_name: {slot},"
            " target_batch_size: 50}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            position_rule="advances",
            cdc=True,
            partial=True,
            split_change=True,
        ),
        Scenario(
            "cdc/first_run",
            "postgres",
            "postgres",
            options="{incremental_strategy: cdc, slot_name: {slot}, publication_name: {slot}}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            position_rule="advances",
            cdc=True,
            first_load=True,
        ),
        Scenario("full_refresh/first_load", "postgres", "postgres", first_load=True),
        Scenario(
            "delta_sink/first_load", "postgres", "delta", delta_batch_rows=200, first_load=True
        ),
        Scenario(
            "delta_sink/merge_column",
            "postgres",
            "delta",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            source_equality="superset",
            delta_batch_rows=25,  # an incremental read of ~700 rows: ~28 batches
        ),
        Scenario(
            "delta_sink/full_refresh",
            "postgres",
            "delta",
            delta_batch_rows=200,
        ),
        Scenario(
            "delta_sync",
            "delta",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            partial=True,
            exclude_columns=("sync_ldts",),
            env={"POSTGRES_CLIENT_BATCH_SIZE": "600", "DELTA_CLIENT_BATCH_SIZE": "500"},
        ),
        Scenario(
            "delta_sync/first_load",
            "delta",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            partial=True,
            first_load=True,
            exclude_columns=("sync_ldts",),
            env={"POSTGRES_CLIENT_BATCH_SIZE": "600", "DELTA_CLIENT_BATCH_SIZE": "500"},
        ),
    )
}

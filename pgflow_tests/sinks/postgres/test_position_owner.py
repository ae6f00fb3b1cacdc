"""A stored position never outlives its target: a dropped or re-created target is loaded from
scratch (never continued from the old cursor), a living one keeps its position."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
import pytest

from pgflow.bindings.metadata import position_metadata
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres import position_owner
from pgflow.sinks.postgres.state import read_stored
from pgflow_tests.flows.cdc.conftest import ORDERS as CDC_ORDERS
from pgflow_tests.flows.cdc.conftest import run as cdc_run
from pgflow_tests.flows.cdc.conftest import same as cdc_same
from pgflow_tests.flows.test_postgres_load_incremental import CHANGES, KEYED, ORDERS, SOURCES
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for, table_text

# Hostile: spaces, capitals, a quote and unicode in both parts of the target's name.
TARGET = TableName("Länd Ing", 'Ord"ers Tbl')
QUOTED = '"Länd Ing"."Ord""ers Tbl"'


def load(source_uri: str, sink_uri: str, kind: str, strategy: StrategySpec) -> LoadResult:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        return load_table(dst, SOURCES[kind](src), TARGET, strategy, pipeline="orders")


def stored_identity(sink_uri: str) -> tuple[str | None, str | None]:
    with psycopg.connect(sink_uri) as conn:
        stored = read_stored(conn, TARGET)
        assert stored is not None
        return stored.identity, stored.current_identity


@pytest.mark.parametrize("strategy", ["delete_insert", "shadow_swap", "append_new"])
@pytest.mark.parametrize("kind", SOURCES.keys())
def test_a_dropped_target_is_loaded_from_scratch_not_from_the_stored_position(
    source_uri: str, sink_uri: str, kind: str, strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    execute(source_uri, ORDERS)
    load(source_uri, sink_uri, kind, KEYED[strategy])
    execute(source_uri, CHANGES)
    assert load(source_uri, sink_uri, kind, KEYED[strategy]).read.full is False  # type: ignore[union-attr]
    execute(sink_uri, f"DROP TABLE {QUOTED}")

    with caplog.at_level(logging.WARNING, logger=position_owner.__name__):
        again = load(source_uri, sink_uri, kind, KEYED[strategy])
    assert again.read is not None and again.read.full
    assert again.read.reason == f"position reset: {position_owner.TARGET_DROPPED}"
    assert again.position_reset == position_owner.TARGET_DROPPED
    assert again.created_target and again.rows == 2010
    assert table_text(sink_uri, QUOTED) == table_text(source_uri, "public.orders")
    assert position_metadata(again)["pgflow/position_reset"].value == "the target was dropped"
    assert "the target was dropped; its stored position" in caplog.text
    identity, current = stored_identity(sink_uri)
    assert identity is not None and identity == current  # the new table's identity, stored


@pytest.mark.parametrize("kind", SOURCES.keys())
def test_another_table_under_the_targets_name_is_rebuilt_from_scratch(
    source_uri: str, sink_uri: str, kind: str
) -> None:
    execute(source_uri, ORDERS)
    load(source_uri, sink_uri, kind, KEYED["upsert"])
    execute(source_uri, CHANGES)
    # Someone drops the target and creates a table of the same shape, with rows of its own.
    execute(
        sink_uri,
        f"CREATE TABLE tmp_shape AS TABLE {QUOTED} WITH NO DATA; DROP TABLE {QUOTED};"
        f' ALTER TABLE tmp_shape SET SCHEMA "Länd Ing"; ALTER TABLE "Länd Ing".tmp_shape'
        f' RENAME TO "Ord""ers Tbl"; ALTER TABLE {QUOTED} ADD PRIMARY KEY (id);'
        f" INSERT INTO {QUOTED} VALUES (999999, 'junk', 1, now())",
    )
    again = load(source_uri, sink_uri, kind, KEYED["upsert"])
    assert again.read is not None and again.read.full
    assert again.position_reset == position_owner.TARGET_REPLACED
    assert not again.created_target
    assert table_text(sink_uri, QUOTED) == table_text(source_uri, "public.orders")  # no junk


def test_a_living_target_keeps_its_position(source_uri: str, sink_uri: str) -> None:
    """GRANTs, VACUUM FULL and shadow_swap's own table swaps are the
    same target: the next run continues from the position."""
    execute(source_uri, ORDERS)
    strategy = KEYED["shadow_swap"]
    load(source_uri, sink_uri, "column", strategy)
    execute(source_uri, CHANGES)
    assert load(source_uri, sink_uri, "column", strategy).position_reset is None
    for maintenance in (
        f"GRANT SELECT ON {QUOTED} TO PUBLIC",
        f"VACUUM FULL {QUOTED}",
        f"ALTER TABLE {QUOTED} ALTER COLUMN status SET STATISTICS 500",
        f"CREATE INDEX ON {QUOTED} (status)",
    ):
        execute(sink_uri, maintenance)
    execute(source_uri, "UPDATE public.orders SET status = 'late', updated_at = now() WHERE id = 7")
    third = load(source_uri, sink_uri, "column", strategy)
    assert third.read is not None and not third.read.full and third.position_reset is None
    assert third.rows_read < 100
    assert table_text(sink_uri, QUOTED) == table_text(source_uri, "public.orders")


def test_a_position_stored_without_identity_is_adopted_or_discarded(
    source_uri: str, sink_uri: str
) -> None:
    """Positions stored by an older pgflow carry no identity: kept while the target exists (the
    next run stores the target's identity), discarded once it is gone."""
    execute(source_uri, ORDERS)
    strategy = KEYED["delete_insert"]
    load(source_uri, sink_uri, "xmin", strategy)
    # As an older pgflow left it: no target_identity column at all.
    execute(sink_uri, "ALTER TABLE _pgflow.pipeline_state DROP COLUMN target_identity")
    execute(source_uri, CHANGES)
    second = load(source_uri, sink_uri, "xmin", strategy)
    assert second.read is not None and not second.read.full and second.position_reset is None
    identity, current = stored_identity(sink_uri)
    assert identity is not None and identity == current  # adopted

    execute(sink_uri, "UPDATE _pgflow.pipeline_state SET target_identity = NULL")
    execute(sink_uri, f"DROP TABLE {QUOTED}")
    third = load(source_uri, sink_uri, "xmin", strategy)
    assert third.read is not None and third.read.full
    assert third.position_reset == position_owner.TARGET_DROPPED
    assert table_text(sink_uri, QUOTED) == table_text(source_uri, "public.orders")
    assert fetch(sink_uri, f"SELECT count(*) FROM {QUOTED}") == [(2010,)]


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def test_a_dropped_cdc_target_is_snapshotted_again_and_the_slot_kept(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, CDC_ORDERS)
    assert cdc_run(source_uri, sink_uri, slot).snapshot is not None
    execute(source_uri, "UPDATE public.orders SET status = 'paid' WHERE id % 10 = 0")
    assert cdc_run(source_uri, sink_uri, slot).snapshot is None
    execute(sink_uri, "DROP TABLE landing.orders")
    execute(source_uri, "DELETE FROM public.orders WHERE id < 100")  # pending in the slot

    again = cdc_run(source_uri, sink_uri, slot)
    assert again.snapshot is not None and again.snapshot.rows == 901
    assert again.snapshot_reason == position_owner.TARGET_DROPPED
    assert again.position_reset == position_owner.TARGET_DROPPED
    assert cdc_same(source_uri, sink_uri)
    assert fetch(
        source_uri, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ) == [(1,)]
    # The pipeline streams on from the snapshot through its slot.
    execute(source_uri, "INSERT INTO public.orders (id, status) VALUES (5000, 'new')")
    after = cdc_run(source_uri, sink_uri, slot)
    assert after.snapshot is None and after.changes == 1 and after.position_reset is None
    assert cdc_same(source_uri, sink_uri)

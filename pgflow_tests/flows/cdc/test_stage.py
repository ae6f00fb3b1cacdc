"""Staging follows the stream's table shape: a column added under pending changes reaches the
target, one dropped stops the run."""

from __future__ import annotations

import pytest

from pgflow.config.model import StrategySpec
from pgflow.flows.cdc.model import CdcApplyError
from pgflow.sinks.postgres.ddl import TargetSchemaError
from pgflow_tests.flows.cdc.conftest import ORDERS, run, same
from pgflow_tests.pg import execute


def test_a_column_added_under_pending_changes_reaches_the_target(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    # Changes in the old shape, then the new column, then changes that fill it.
    execute(source_uri, "UPDATE public.orders SET status = 'before' WHERE id <= 2")
    execute(source_uri, "ALTER TABLE public.orders ADD COLUMN channel varchar(10)")
    execute(source_uri, "UPDATE public.orders SET channel = 'web' WHERE id <= 3")
    result = run(source_uri, sink_uri, slot)
    assert result.changes == 5
    assert same(source_uri, sink_uri)


def test_a_dropped_column_under_pending_changes_stops_the_run(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(source_uri, "UPDATE public.orders SET note = 'last' WHERE id = 1")
    execute(source_uri, "ALTER TABLE public.orders DROP COLUMN note")
    with pytest.raises(
        TargetSchemaError, match="note are in the target but no longer in the source"
    ):
        run(source_uri, sink_uri, slot)
    # With on_schema_change: sync the target follows, but changes still carrying the column
    # cannot be applied to it: the run stops rather than drop their values silently.
    sync = StrategySpec(mode="incremental_merge", unique_key=("id",), on_schema_change="sync")
    with pytest.raises(CdcApplyError, match=r"note \(gone from the source\).*reset: true"):
        run(source_uri, sink_uri, slot, sync)

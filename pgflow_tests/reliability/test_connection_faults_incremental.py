"""Connections failing mid-run in incremental loads: an incremental_merge with its source COPY,
sink COPY and apply terminated; a CDC snapshot and stream terminated. The run succeeds after
retries and the stored position is right (for CDC: the slot's confirmed position).

Part of the connection-fault tests (test_connection_faults_*.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgflow_tests.pg import drop_slots, slot_name_for
from pgflow_tests.reliability.connection_faults_support import (
    BASE_DELAY,
    CDC,
    CHANGES,
    ITEMS_INSERT,
    MERGE,
    PAUSE_AFTER,
    ROWS,
    Pipeline,
    _cdc_position_is_the_slot,
    _mid_copy,
    _succeeded,
)
from pgflow_tests.reliability.faults_support import (
    Fault,
    LockHolder,
    SourceReadPauses,
    assert_backoff,
    copy_in_progress,
    dbname,
    execute,
    fetch,
    figures,
    items_table,
    stored_position,
    waiting_on_lock,
    watching,
)


@pytest.mark.faults
def test_merge_source_then_sink_copy_then_apply_terminated(pipeline: Pipeline) -> None:
    """One run of an incremental merge loses its source mid-COPY, then its sink mid-COPY into
    staging, then its sink while the apply waits on a row: three retries, each waiting
    longer, and the target and the stored cursor are exactly right."""
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(MERGE)
    _succeeded(pipeline.run(), retries=0)
    for statement in CHANGES:
        execute(pipeline.source_uri, statement)
    changed = fetch(
        pipeline.source_uri, "SELECT count(*) FROM items WHERE updated_at > '2026-06-01'"
    )[0][0]
    # A reader holds one changed row: the apply's DELETE waits for it, observably.
    holder = LockHolder(pipeline.sink_uri, "SELECT 1 FROM landing.items WHERE id = 3 FOR UPDATE")
    sink, source = dbname(pipeline.sink_uri), dbname(pipeline.source_uri)
    pauses = SourceReadPauses(pipeline.monkeypatch, 2, PAUSE_AFTER)
    faults = [
        Fault("source COPY", copy_in_progress(source, "COPY TO", 1), then=pauses.resume(0)),
        Fault(
            "sink COPY into staging",
            copy_in_progress(sink, "COPY FROM", 1),
            then=pauses.resume(1),
        ),
        Fault("apply", waiting_on_lock(sink, "DELETE FROM"), then=holder.release),
    ]
    try:
        with watching(pipeline.sink_uri, faults) as watcher:
            outcome = pipeline.run()
    finally:
        holder.release()
    assert [f.name for f in watcher.fired] == [f.name for f in faults]
    _mid_copy(faults[0], changed)
    _mid_copy(faults[1], changed)
    _succeeded(outcome, retries=3)
    assert_backoff(outcome, BASE_DELAY)
    copied, total = pipeline.equal()
    high_water = fetch(pipeline.source_uri, "SELECT max(updated_at)::text FROM items")[0][0]
    assert stored_position(pipeline.sink_uri, "landing", "items") == high_water
    metadata = outcome.result.asset_materializations_for_node("landing__items")[0].metadata
    assert metadata["pgflow/rows_read"].value == changed  # one read of the changes, not four
    figures(
        f"FAULTS incremental_merge source mid-COPY, sink mid-COPY, sink mid-apply: "
        f"{outcome.retry_count} retries, waits {', '.join(f'{w:.1f}' for w in outcome.waits)} s, "
        f"target {copied}/{total} rows equal, cursor {high_water}",
        case="incremental_merge source, sink COPY and apply terminated",
        retries=outcome.retry_count,
        waits=outcome.waits,
        rows=copied,
    )


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


@pytest.mark.faults
def test_cdc_snapshot_and_stream_terminated(pipeline: Pipeline, slot: str) -> None:
    """CDC: the source backend dies mid snapshot COPY (first run), the sink backend while a
    streamed batch is applied (second run); both retried, target exact, LSN stored."""
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(CDC.format(slot=slot))
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    snapshot_copy = Fault(
        "snapshot COPY",
        copy_in_progress(dbname(pipeline.source_uri), "COPY TO", 1),
        then=pauses.resume(0),
    )
    with watching(pipeline.source_uri, [snapshot_copy]):
        first = pipeline.run()
    _succeeded(first, retries=1)
    _mid_copy(snapshot_copy, ROWS)
    pipeline.equal()
    _cdc_position_is_the_slot(pipeline, slot)

    execute(
        pipeline.source_uri,
        "UPDATE items SET price = 7 WHERE id % 5 = 0; DELETE FROM items WHERE id % 11 = 0",
    )
    execute(pipeline.source_uri, ITEMS_INSERT, (ROWS + 1, ROWS + 300))
    holder = LockHolder(pipeline.sink_uri, "SELECT 1 FROM landing.items WHERE id = 5 FOR UPDATE")
    apply = Fault(
        "batch apply",
        waiting_on_lock(dbname(pipeline.sink_uri), ""),
        then=holder.release,
    )
    try:
        with watching(pipeline.sink_uri, [apply]):
            second = pipeline.run()
    finally:
        holder.release()
    _succeeded(second, retries=1)
    copied, total = pipeline.equal()
    lsn = _cdc_position_is_the_slot(pipeline, slot)
    metadata = second.result.asset_materializations_for_node("landing__items")[0].metadata
    assert metadata["pgflow/deletes"].value == ROWS // 11
    figures(
        f"FAULTS cdc source terminated mid snapshot COPY, sink terminated mid batch apply: "
        f"{first.retry_count}+{second.retry_count} retries, target {copied}/{total} rows equal, "
        f"LSN {lsn} = slot",
        case="cdc snapshot and apply terminated",
        retries=first.retry_count + second.retry_count,
        rows=copied,
    )

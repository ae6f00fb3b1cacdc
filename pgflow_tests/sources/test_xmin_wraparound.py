"""xmin incremental reads lose nothing across a real transaction-ID wraparound.

A row's raw `xmin` is 32 bits: after 2^32 transactions the counter restarts at 3, so a peer's
naive `xmin::text::bigint >= checkpoint` returns nothing written after the wrap. pgflow extends
each xmin to 64 bits against the snapshot's epoch-aware xmax (pgflow/sources/xmin.py).

The cluster is a throw-away one whose next transaction ID was set to 2^32 - 20,000 with
pg_resetwal (see wraparound.py for the steps: freeze, pg_resetwal -x/-u, a new pg_xact segment,
restart). The tests then burn real transactions across the wrap. Proved here:

- full load before the wrap, changes on both sides of it, then an incremental load: the target
  equals the source, exactly the changed rows were read and the checkpoint is past 2^32;
- the naive filter misses exactly the rows changed after the wrap;
- a load with nothing new reads nothing;
- a checkpoint 2^31 or more behind the snapshot forces a full resync; one just under does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.localdb.cluster import LocalPostgres
from pgflow.sinks.postgres.state import STATE_TABLE
from pgflow.sources.xmin import MAX_CHECKPOINT_AGE, XminSource
from pgflow_tests.pg import execute, fetch, table_text
from pgflow_tests.sources.wraparound import (
    NEAR_WRAP_XID,
    XID_SPACE,
    burn_past_wraparound,
    current_xid,
    push_near_wraparound,
)

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="delete_insert")
EVENTS = TableName("public", "events")
EVENTS_TARGET = TableName("landing", "events")
EVENT_ROWS = 5_000
AGED = TableName("public", "aged")
AGED_ROWS = 100


@dataclass(frozen=True)
class Wrapped:
    source: str  # URIs of two databases of one cluster, whose counter is near 2^32
    sink: str


@pytest.fixture(scope="module")
def wrapped(make_pg_root: Callable[[], Path]) -> Iterator[Wrapped]:
    cluster = LocalPostgres(make_pg_root())
    try:
        cluster.start(["source", "sink"])
        info = push_near_wraparound(cluster)
        yield Wrapped(info.uri("source"), info.uri("sink"))
    finally:
        cluster.destroy()  # a rewritten cluster is never reused


def load(w: Wrapped, source: TableName, target: TableName) -> LoadResult:
    with psycopg.connect(w.source) as src, psycopg.connect(w.sink, autocommit=True) as dst:
        return load_table(dst, XminSource(src, source), target, MERGE, pipeline=target.name)


def same_as_source(w: Wrapped, source: TableName, target: TableName) -> bool:
    return table_text(w.source, str(source)) == table_text(w.sink, str(target))


def create_table(uri: str, table: TableName, rows: int) -> None:
    execute(uri, f"CREATE TABLE {table} (id bigint PRIMARY KEY, v text)")
    execute(uri, f"INSERT INTO {table} SELECT g, 'row ' || g FROM generate_series(1, {rows}) g")
    # Frozen rows keep their raw xmin. It also leaves autovacuum no reason to ANALYZE the table
    # mid-test: an ANALYZE in flight holds snapshot xmins back, so later reads re-read rows.
    execute(uri, f"VACUUM (FREEZE, ANALYZE) {table}")


def change(uri: str, updated: range, inserted: range, tag: str) -> set[int]:
    """Update and insert rows of events (one transaction each); the ids written."""
    execute(
        uri,
        "UPDATE public.events SET v = v || %s WHERE id BETWEEN %s AND %s",
        (f" {tag}", updated.start, updated.stop - 1),
    )
    execute(
        uri,
        "INSERT INTO public.events SELECT g, %s FROM generate_series(%s::int, %s::int) g",
        (tag, inserted.start, inserted.stop - 1),
    )
    return set(updated) | set(inserted)


def raw_xmins(uri: str, ids: set[int]) -> tuple[int, int]:
    """(min, max) of the 32-bit xmin of events rows ``ids``."""
    query = "SELECT min(xmin::text::bigint), max(xmin::text::bigint) FROM events WHERE id = ANY(%s)"
    return fetch(uri, query, (sorted(ids),))[0]


def naive_ids(uri: str, checkpoint: int) -> set[int]:
    """The ids a peer's 32-bit filter would read: `xmin::text::bigint >= checkpoint`."""
    query = "SELECT id FROM events WHERE xmin::text::bigint >= %s"
    return {r[0] for r in fetch(uri, query, (checkpoint,))}


def test_incremental_reads_lose_nothing_across_the_wrap(wrapped: Wrapped) -> None:
    w = wrapped
    create_table(w.source, EVENTS, EVENT_ROWS)
    assert raw_xmins(w.source, {1})[0] >= NEAR_WRAP_XID  # written just below 2^32

    first = load(w, EVENTS, EVENTS_TARGET)
    assert first.read and first.read.full and first.rows_read == EVENT_ROWS
    assert same_as_source(w, EVENTS, EVENTS_TARGET)
    assert first.position_after and first.position_after.value_type == "xid8"
    checkpoint = int(first.position_after.value)
    assert NEAR_WRAP_XID < checkpoint < XID_SPACE

    before_wrap = change(w.source, range(1, 51), range(5_001, 5_051), "before")
    assert current_xid(w.source) < XID_SPACE
    burnt = burn_past_wraparound(w.source)
    assert burnt > XID_SPACE  # epoch 1: the raw 32-bit counter restarted
    # Rows 26-50 change again after the wrap: their newest xmin is the small one.
    after_wrap = change(w.source, range(26, 76), range(5_051, 5_101), "after")
    changed = before_wrap | after_wrap
    low, high = raw_xmins(w.source, after_wrap)
    assert burnt - XID_SPACE < low <= high < burnt - XID_SPACE + 10  # raw = 64-bit ID - 2^32

    # The peer bug: the 32-bit filter sees only what changed before the wrap.
    assert naive_ids(w.source, checkpoint) == before_wrap - after_wrap
    assert len(before_wrap - after_wrap) < len(changed)

    second = load(w, EVENTS, EVENTS_TARGET)
    assert second.read and not second.read.full and second.read.since == first.position_after
    assert second.rows_read == len(changed) == 175  # every changed row, nothing else
    assert same_as_source(w, EVENTS, EVENTS_TARGET)
    assert second.position_after and int(second.position_after.value) > XID_SPACE

    third = load(w, EVENTS, EVENTS_TARGET)
    assert third.read and not third.read.full and third.rows_read == 0
    assert same_as_source(w, EVENTS, EVENTS_TARGET)
    assert third.position_after
    assert int(third.position_after.value) >= int(second.position_after.value)


def set_checkpoint(sink_uri: str, target: TableName, value: int) -> None:
    """Overwrite the stored position, as if the last run were that long ago."""
    execute(
        sink_uri,
        f"UPDATE {STATE_TABLE} SET value = %s WHERE target_schema = %s AND target_table = %s",
        (str(value), target.schema, target.name),
    )


@pytest.fixture(scope="module")
def aged(wrapped: Wrapped) -> Wrapped:
    if current_xid(wrapped.source) < XID_SPACE:  # when run on its own: wrap first
        burn_past_wraparound(wrapped.source)
    create_table(wrapped.source, AGED, AGED_ROWS)
    return wrapped


@pytest.mark.parametrize(
    ("name", "checkpoint", "full"),
    [
        pytest.param("epoch_zero", lambda now: 1_000, True, id="epoch-0"),
        # Any snapshot taken after `now` has xmax > now: the age is 2^31 or more.
        pytest.param("at_limit", lambda now: now + 1 - MAX_CHECKPOINT_AGE, True, id="2^31"),
        pytest.param(
            "under_limit", lambda now: now - MAX_CHECKPOINT_AGE + 1_000_000, False, id="2^31-1M"
        ),
    ],
)
def test_a_checkpoint_2_31_old_forces_a_full_resync(
    aged: Wrapped, name: str, checkpoint: Callable[[int], int], full: bool
) -> None:
    target = TableName("landing", f"aged_{name}")
    first = load(aged, AGED, target)
    assert first.read and first.read.full and first.read.reason.startswith("first run")
    execute(aged.source, f"UPDATE {AGED} SET v = v || '+' WHERE id = 1")
    set_checkpoint(aged.sink, target, checkpoint(current_xid(aged.source)))

    result = load(aged, AGED, target)
    assert result.read and result.read.full is full
    assert ("2^31" in result.read.reason) is full
    # Every row is newer than the faked checkpoint: an incremental read also takes them all.
    assert result.rows_read == AGED_ROWS
    assert same_as_source(aged, AGED, target)
    assert result.position_after and int(result.position_after.value) > XID_SPACE

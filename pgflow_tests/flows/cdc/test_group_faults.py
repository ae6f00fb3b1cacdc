"""Faults of a CDC group (tables sharing one slot), real clusters: a table without replica
identity, the slot dropped or invalidated behind pgflow's back, no free slot for a live add,
a sink that fails (refused, a stopped cluster, an error mid-run), a subset run. A member's
fault stops only it; the slot never moves past a member's position, so its next run applies
its changes exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest

from pgflow.flows.cdc.group_model import GroupMember
from pgflow.localdb import network
from pgflow.localdb.cluster import LocalPostgres
from pgflow.sources.cdc import ReplicationError
from pgflow_tests.flows.cdc.conftest import connector
from pgflow_tests.flows.cdc.group_faults_support import (
    NAMES,
    backfill_slots,
    change,
    confirmed_at,
    member_of,
    ok,
    position_of,
    run_group,
    same_rows,
    table_sql,
    wal_status,
)
from pgflow_tests.pg import drop_slots, execute, fetch


@pytest.fixture
def group_slot(slot: str, source_uri: str) -> Iterator[str]:
    yield slot
    drop_slots(source_uri, *backfill_slots(source_uri))


def test_a_table_without_replica_identity_fails_alone_with_the_fix(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    execute(source_uri, table_sql("a") + table_sql("b", primary_key=False) + table_sql("c"))
    sink = connector(sink_uri)
    members = [member_of(n, sink) for n in NAMES]  # b between a and c
    first = run_group(source_uri, slot, members)
    error = first["b"]
    assert isinstance(error, ReplicationError)
    assert "public.b has no primary key" in str(error)
    assert "REPLICA IDENTITY FULL" in str(error)
    assert ok(first, "a").snapshot and ok(first, "c").snapshot
    assert same_rows(source_uri, sink_uri, "a") and same_rows(source_uri, sink_uri, "c")
    # The refused table is not published: its changes do not load the slot.
    published = fetch(
        source_uri, "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (slot,)
    )
    assert sorted(r[0] for r in published) == ["a", "c"]

    for offset, name in enumerate(NAMES):
        change(source_uri, name, offset)
    second = run_group(source_uri, slot, members)
    assert isinstance(second["b"], ReplicationError)
    assert ok(second, "a").changes == 18 and ok(second, "c").changes == 18
    assert same_rows(source_uri, sink_uri, "a") and same_rows(source_uri, sink_uri, "c")

    # The fix the message names: b joins (live, through a temporary slot) and catches up.
    execute(source_uri, "ALTER TABLE public.b REPLICA IDENTITY FULL")
    change(source_uri, "a", 7)
    third = run_group(source_uri, slot, members)
    assert ok(third, "b").snapshot is not None and ok(third, "a").changes == 18
    assert all(same_rows(source_uri, sink_uri, n) for n in NAMES)
    assert backfill_slots(source_uri) == []


def test_a_failed_member_listed_first_costs_the_others_nothing(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    execute(source_uri, table_sql("a", primary_key=False) + table_sql("b") + table_sql("c"))
    members = [member_of(n, connector(sink_uri)) for n in NAMES]
    assert isinstance(run_group(source_uri, slot, members)["a"], ReplicationError)
    change(source_uri, "b", 1)
    change(source_uri, "c", 2)
    second = run_group(source_uri, slot, members)
    assert same_rows(source_uri, sink_uri, "b"), "b lost its changes or took c's"
    assert same_rows(source_uri, sink_uri, "c"), "c lost its changes"
    assert ok(second, "b").changes == 18 and ok(second, "c").changes == 18


def _two_in_step(source_uri: str, sink_uri: str, slot: str) -> list[GroupMember]:
    execute(source_uri, table_sql("a") + table_sql("b"))
    members = [member_of(n, connector(sink_uri)) for n in ("a", "b")]
    run_group(source_uri, slot, members)
    change(source_uri, "a", 0)
    change(source_uri, "b", 1)
    return members


def test_the_shared_slot_dropped_behind_pgflows_back_is_an_error_and_reset_recovers(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    members = _two_in_step(source_uri, sink_uri, slot)
    drop_slots(source_uri, slot)
    with pytest.raises(ReplicationError, match=f"replication slot {slot} does not exist"):
        run_group(source_uri, slot, members)
    # Resetting one member makes a new slot; the other's changes are gone from it: it says so.
    reset_a = [member_of("a", connector(sink_uri), reset=True), members[1]]
    outcome = run_group(source_uri, slot, reset_a)
    assert ok(outcome, "a").snapshot is not None and same_rows(source_uri, sink_uri, "a")
    assert isinstance(outcome["b"], ReplicationError)
    assert f"{slot} does not exist" in str(outcome["b"]) and "reset: true" in str(outcome["b"])
    reset_b = [members[0], member_of("b", connector(sink_uri), reset=True)]
    ok(run_group(source_uri, slot, reset_b), "b")
    change(source_uri, "a", 11)
    change(source_uri, "b", 12)
    last = run_group(source_uri, slot, members)
    assert ok(last, "a").changes == 18 and ok(last, "b").changes == 18
    assert same_rows(source_uri, sink_uri, "a") and same_rows(source_uri, sink_uri, "b")


@pytest.fixture
def small_slot_wal_limit(source_uri: str) -> Iterator[None]:
    """max_slot_wal_keep_size = 1MB on the (per-worker) cluster, for one test."""
    execute(source_uri, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    execute(source_uri, "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        execute(source_uri, "ALTER SYSTEM RESET max_slot_wal_keep_size")
        execute(source_uri, "SELECT pg_reload_conf()")


def _invalidate(source_uri: str, slot: str) -> None:
    """Push the slot's WAL past max_slot_wal_keep_size and checkpoint: the slot is lost."""
    with psycopg.connect(source_uri, autocommit=True) as conn:
        for _ in range(4):
            conn.execute("CREATE TABLE IF NOT EXISTS noise (n int); INSERT INTO noise VALUES (1)")
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
    assert wal_status(source_uri, slot) == "lost"


def test_an_invalidated_shared_slot_is_an_error_and_reset_recovers(
    source_uri: str, sink_uri: str, group_slot: str, small_slot_wal_limit: None
) -> None:
    slot, members = group_slot, _two_in_step(source_uri, sink_uri, group_slot)
    _invalidate(source_uri, slot)
    with pytest.raises(ReplicationError, match="was invalidated") as raised:
        run_group(source_uri, slot, members)
    assert "max_slot_wal_keep_size" in str(raised.value) and "reset: true" in str(raised.value)
    reset = [member_of(n, connector(sink_uri), reset=True) for n in ("a", "b")]
    outcome = run_group(source_uri, slot, reset)
    assert ok(outcome, "a").snapshot is not None and ok(outcome, "b").snapshot is not None
    assert wal_status(source_uri, slot) == "reserved"
    change(source_uri, "b", 3)
    after = run_group(source_uri, slot, members)
    assert ok(after, "b").changes == 18 and ok(after, "a").changes == 0
    assert same_rows(source_uri, sink_uri, "a") and same_rows(source_uri, sink_uri, "b")


@pytest.fixture
def one_slot_cluster(
    make_pg_root: Callable[[], Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], str]]:
    """A cluster of its own with max_replication_slots = 1: room for the group's slot only."""
    monkeypatch.setitem(network.SERVER_SETTINGS, "max_replication_slots", "1")
    cluster = LocalPostgres(make_pg_root())
    info = cluster.start(["source", "sink"])
    try:
        yield info.uri
    finally:
        cluster.destroy()


def test_no_free_slot_for_a_live_add_fails_only_the_newcomer_naming_the_setting(
    one_slot_cluster: Callable[[str], str],
) -> None:
    source_uri, sink_uri = one_slot_cluster("source"), one_slot_cluster("sink")
    execute(source_uri, "".join(table_sql(n) for n in NAMES))
    sink = connector(sink_uri)
    two = [member_of(n, sink) for n in "ab"]
    ok(run_group(source_uri, "grp_slot", two), "a")
    change(source_uri, "a", 1)
    outcome = run_group(source_uri, "grp_slot", [*two, member_of("c", sink)])
    words = ("max_replication_slots", "temporary slot", "grp_slot_backfill_")
    assert isinstance(outcome["c"], ReplicationError)
    assert all(w in str(outcome["c"]) for w in words), outcome["c"]
    assert ok(outcome, "a").changes == 18 and ok(outcome, "b").changes == 0
    assert same_rows(source_uri, sink_uri, "a") and same_rows(source_uri, sink_uri, "b")
    # Nothing was taken twice: the group carries on, with or without the newcomer.
    change(source_uri, "b", 2)
    again = run_group(source_uri, "grp_slot", two)
    assert ok(again, "a").changes == 0 and ok(again, "b").changes == 18
    assert same_rows(source_uri, sink_uri, "b")


def _unreachable(**_: Any) -> NoReturn:
    """A sink that refuses connections, as a stopped warehouse does."""
    raise psycopg.OperationalError("connection to the warehouse refused (test)")


def test_a_member_losing_its_replica_identity_holds_the_slot_until_fixed(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    members = _two_in_step(source_uri, sink_uri, slot)
    run_group(source_uri, slot, members)
    held = position_of(sink_uri, "b")
    execute(source_uri, "ALTER TABLE public.b REPLICA IDENTITY NOTHING")
    execute(source_uri, "INSERT INTO public.b SELECT g, 3, 'late' FROM generate_series(900, 904) g")
    broken = run_group(source_uri, slot, members)
    assert "REPLICA IDENTITY NOTHING" in str(broken["b"]) and ok(broken, "a").changes == 0
    confirmed = confirmed_at(source_uri, slot)
    assert held is not None and confirmed is not None and confirmed <= held, "slot moved on"
    execute(source_uri, "ALTER TABLE public.b REPLICA IDENTITY DEFAULT")
    assert ok(run_group(source_uri, slot, members), "b").changes == 5
    assert same_rows(source_uri, sink_uri, "b")


def test_an_unreachable_sink_stops_only_its_members_and_holds_the_slot(
    source_uri: str, sink_uri: str, fresh_db: str, group_slot: str
) -> None:
    slot, other_uri = group_slot, fresh_db
    execute(source_uri, table_sql("a") + table_sql("b"))
    a = member_of("a", connector(sink_uri), sink_id="one")
    b = member_of("b", connector(other_uri), sink_id="two")
    run_group(source_uri, slot, [a, b])
    held = position_of(other_uri, "b")
    assert held is not None
    change(source_uri, "a", 1)
    change(source_uri, "b", 2)
    down = member_of("b", _unreachable, sink_id="two")
    outcome = run_group(source_uri, slot, [a, down])
    assert isinstance(outcome["b"], psycopg.OperationalError)
    assert ok(outcome, "a").changes == 18 and same_rows(source_uri, sink_uri, "a")
    confirmed = confirmed_at(source_uri, slot)
    assert confirmed is not None and confirmed <= held, "the slot moved past b's position"
    back = run_group(source_uri, slot, [a, b])
    assert ok(back, "b").changes == 18 and ok(back, "a").changes == 0
    assert same_rows(source_uri, other_uri, "b")


@pytest.fixture
def warehouse(make_pg_root: Callable[[], Path]) -> Iterator[LocalPostgres]:
    """A second cluster, b's warehouse, that a test may stop and start."""
    cluster = LocalPostgres(make_pg_root())
    cluster.start(["sink"])
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_a_stopped_sink_cluster_stops_only_its_member_until_it_is_back(
    source_uri: str, sink_uri: str, group_slot: str, warehouse: LocalPostgres
) -> None:
    slot, other_uri = group_slot, warehouse.start().uri("sink")
    execute(source_uri, table_sql("a") + table_sql("b"))
    a = member_of("a", connector(sink_uri), sink_id="one")
    b = member_of("b", connector(other_uri), sink_id="two")
    run_group(source_uri, slot, [a, b])
    held = position_of(other_uri, "b")
    change(source_uri, "a", 1)
    change(source_uri, "b", 2)
    warehouse.stop()
    outcome = run_group(source_uri, slot, [a, b])
    assert isinstance(outcome["b"], psycopg.OperationalError)
    assert ok(outcome, "a").changes == 18 and same_rows(source_uri, sink_uri, "a")
    confirmed = confirmed_at(source_uri, slot)
    assert held is not None and confirmed is not None and confirmed <= held
    other_uri = warehouse.start().uri("sink")  # its port may have changed
    b = member_of("b", connector(other_uri), sink_id="two")
    back = run_group(source_uri, slot, [a, b])
    assert ok(back, "b").changes == 18 and ok(back, "a").changes == 0
    assert same_rows(source_uri, other_uri, "b")


def test_a_sink_failing_mid_run_stops_only_its_member_and_holds_the_slot(
    source_uri: str, sink_uri: str, fresh_db: str, group_slot: str
) -> None:
    """b's sink (a database of its own) refuses b's batch: a and c apply, the slot stays at
    b's position, and once the sink takes it again b's next run applies it exactly once."""
    slot, other_uri = group_slot, fresh_db
    execute(source_uri, "".join(table_sql(n) for n in NAMES))
    sinks = {"a": (sink_uri, "one"), "c": (sink_uri, "one"), "b": (other_uri, "two")}
    members = [member_of(n, connector(uri), sink_id=sid) for n, (uri, sid) in sinks.items()]
    run_group(source_uri, slot, members)
    held = position_of(other_uri, "b")
    assert held is not None
    for offset, name in enumerate(NAMES):
        change(source_uri, name, offset)
    refuse = "ALTER TABLE landing.b ADD CONSTRAINT refuse CHECK (qty < 100) NOT VALID"
    execute(other_uri, refuse)
    outcome = run_group(source_uri, slot, members)
    assert isinstance(outcome["b"], psycopg.errors.CheckViolation)
    assert ok(outcome, "a").changes == 18 and ok(outcome, "c").changes == 18
    assert same_rows(source_uri, sink_uri, "a") and same_rows(source_uri, sink_uri, "c")
    confirmed = confirmed_at(source_uri, slot)
    assert confirmed is not None and confirmed <= held, "the slot moved past b's position"
    assert position_of(other_uri, "b") == held and not same_rows(source_uri, other_uri, "b")
    execute(other_uri, "ALTER TABLE landing.b DROP CONSTRAINT refuse")
    back = run_group(source_uri, slot, members)
    assert ok(back, "b").changes == 18 and ok(back, "a").changes == 0
    assert all(same_rows(source_uri, uri, n) for n, (uri, _) in sinks.items())
    assert confirmed_at(source_uri, slot) == min(
        position_of(u, n) or 0 for n, (u, _) in sinks.items()
    )


def _subset_world(source_uri: str, sink_uri: str, slot: str) -> list[GroupMember]:
    """Three members in step, then 18 changes to each table; b's position must hold the slot."""
    execute(source_uri, "".join(table_sql(n) for n in NAMES))
    members = [member_of(n, connector(sink_uri)) for n in NAMES]
    run_group(source_uri, slot, members)
    for offset, name in enumerate(NAMES):
        change(source_uri, name, offset)
    return members


def test_a_subset_run_keeps_the_other_members_changes(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    members = _subset_world(source_uri, sink_uri, slot)
    b_before, c_before = position_of(sink_uri, "b"), position_of(sink_uri, "c")
    only_a = run_group(source_uri, slot, members, selected=["a"])
    assert set(only_a) == {"a"} and ok(only_a, "a").changes == 18
    assert same_rows(source_uri, sink_uri, "a") and not same_rows(source_uri, sink_uri, "b")
    assert (position_of(sink_uri, "b"), position_of(sink_uri, "c")) == (b_before, c_before)
    confirmed = confirmed_at(source_uri, slot)
    assert confirmed is not None and b_before is not None and confirmed <= b_before
    change(source_uri, "a", 5)
    everyone = run_group(source_uri, slot, members)
    assert ok(everyone, "a").changes == 18, "a applies its own later change only"
    assert ok(everyone, "b").changes == 18 and ok(everyone, "c").changes == 18
    assert all(same_rows(source_uri, sink_uri, n) for n in NAMES)
    positions = [position_of(sink_uri, n) for n in NAMES]
    assert confirmed_at(source_uri, slot) == min(p or 0 for p in positions)
    again = run_group(source_uri, slot, members)
    assert all(ok(again, n).changes == 0 for n in NAMES), "nothing is applied twice"


def test_a_subset_run_of_a_later_member_applies_its_kept_changes(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    members = _subset_world(source_uri, sink_uri, slot)
    only_b = run_group(source_uri, slot, members, selected=["b"])
    assert ok(only_b, "b").changes == 18 and same_rows(source_uri, sink_uri, "b")
    assert not same_rows(source_uri, sink_uri, "a") and not same_rows(source_uri, sink_uri, "c")

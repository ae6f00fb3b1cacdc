"""Faults of a CDC group (tables sharing one slot), real clusters: a table without replica
identity, the slot dropped or invalidated behind pgflow's back, no free slot for a live add,
a sink that fails, a subset run. A member's fault stops only it; the slot never moves past
a member's position, so its next run applies its changes exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest

from pgflow.config.model import TableName
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import GroupOutcome, replicate_group
from pgflow.flows.cdc.model import CdcResult, CdcTarget, ConnectSink
from pgflow.localdb import network
from pgflow.localdb.cluster import LocalPostgres
from pgflow.sinks.postgres import state
from pgflow.sources.cdc import ReplicationError, slot_info
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.flows.cdc.conftest import MERGE, connector
from pgflow_tests.pg import drop_slots, execute, fetch, table_text

NAMES = ("a", "b", "c")
ROWS = 300


def _table_sql(name: str, primary_key: bool = True) -> str:
    key = "PRIMARY KEY" if primary_key else "NOT NULL"
    return (
        f"CREATE TABLE public.{name} (id bigint {key}, qty integer NOT NULL, note text);"
        f"INSERT INTO public.{name} SELECT g, g % 13, 'n' || g FROM generate_series(1, {ROWS}) g;"
    )


def _change(uri: str, name: str, offset: int) -> None:
    """10 updates, 5 inserts, 3 deletes in one transaction: 18 changes."""
    execute(
        uri,
        f"UPDATE public.{name} SET qty = qty + 100 WHERE id <= {ROWS} AND id % 30 = {offset % 30};"
        f"INSERT INTO public.{name} SELECT g, 1, 'new' FROM generate_series("
        f"{10_000 + offset * 10}, {10_000 + offset * 10 + 4}) g;"
        f"DELETE FROM public.{name} WHERE id IN ({offset + 100}, {offset + 130}, {offset + 160});",
    )


def _member(name: str, sink: ConnectSink, sink_id: str = "sink", **kw: Any) -> GroupMember:
    return GroupMember(
        pipeline=name,
        table=TableName("public", name),
        target=CdcTarget(TableName("landing", name), MERGE),
        connect_sink=sink,
        sink_id=sink_id,
        **kw,
    )


def _run(
    source_uri: str, slot: str, members: list[GroupMember], selected: Any = None
) -> GroupOutcome:
    chosen = [m.pipeline for m in members] if selected is None else selected
    settings = GroupSettings(name="grp", slot=slot, publication=slot)
    return replicate_group(connector(source_uri), settings, members, chosen)


def _ok(outcome: GroupOutcome, name: str) -> CdcResult:
    result = outcome[name]
    assert isinstance(result, CdcResult), f"{name} failed: {result!r}"
    return result


def _same(source_uri: str, sink_uri: str, name: str) -> bool:
    return table_text(source_uri, f"public.{name}") == table_text(sink_uri, f"landing.{name}")


def _position(sink_uri: str, name: str) -> int | None:
    with psycopg.connect(sink_uri) as conn:
        stored = state.read_position(conn, TableName("landing", name))
    return None if stored is None else lsn_to_int(stored.value)


def _confirmed(source_uri: str, slot: str) -> int | None:
    with psycopg.connect(source_uri) as conn:
        info = slot_info(conn, slot)
    return None if info is None else info.confirmed_flush


def _wal_status(source_uri: str, slot: str) -> str:
    query = "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s"
    return str(fetch(source_uri, query, (slot,))[0][0])


def _backfill_slots(source_uri: str) -> list[str]:
    rows = fetch(source_uri, "SELECT slot_name FROM pg_replication_slots")
    return [r[0] for r in rows if "_backfill_" in r[0]]


@pytest.fixture
def group_slot(slot: str, source_uri: str) -> Iterator[str]:
    yield slot
    drop_slots(source_uri, *_backfill_slots(source_uri))


def test_a_table_without_replica_identity_fails_alone_with_the_fix(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    execute(source_uri, _table_sql("a") + _table_sql("b", primary_key=False) + _table_sql("c"))
    sink = connector(sink_uri)
    members = [_member(n, sink) for n in ("a", "c", "b")]  # b last: see the xfail below
    first = _run(source_uri, slot, members)
    error = first["b"]
    assert isinstance(error, ReplicationError)
    assert "public.b has no primary key" in str(error)
    assert "REPLICA IDENTITY FULL" in str(error)
    assert _ok(first, "a").snapshot and _ok(first, "c").snapshot
    assert _same(source_uri, sink_uri, "a") and _same(source_uri, sink_uri, "c")
    # The refused table is not published: its changes do not load the slot.
    published = fetch(
        source_uri, "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (slot,)
    )
    assert sorted(r[0] for r in published) == ["a", "c"]

    for offset, name in enumerate(NAMES):
        _change(source_uri, name, offset)
    second = _run(source_uri, slot, members)
    assert isinstance(second["b"], ReplicationError)
    assert _ok(second, "a").changes == 18 and _ok(second, "c").changes == 18
    assert _same(source_uri, sink_uri, "a") and _same(source_uri, sink_uri, "c")

    # The fix the message names: b joins (live, through a temporary slot) and catches up.
    execute(source_uri, "ALTER TABLE public.b REPLICA IDENTITY FULL")
    _change(source_uri, "a", 7)
    third = _run(source_uri, slot, members)
    assert _ok(third, "b").snapshot is not None and _ok(third, "a").changes == 18
    assert all(_same(source_uri, sink_uri, n) for n in NAMES)
    assert _backfill_slots(source_uri) == []


INDEX_BUG = (
    "engine: group_stream._Batches numbers members by their place among the STREAMING members, "
    "GroupApplier looks batch.staged's numbers up in run.members (all of them): a member after "
    "a failed or unselected one has its batch dropped (or applied to another member's target)"
)


@pytest.mark.xfail(strict=True, reason=INDEX_BUG)
def test_a_failed_member_listed_first_costs_the_others_nothing(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    execute(source_uri, _table_sql("a", primary_key=False) + _table_sql("b") + _table_sql("c"))
    members = [_member(n, connector(sink_uri)) for n in NAMES]
    assert isinstance(_run(source_uri, slot, members)["a"], ReplicationError)
    _change(source_uri, "b", 1)
    _change(source_uri, "c", 2)
    second = _run(source_uri, slot, members)
    assert _same(source_uri, sink_uri, "b"), "b lost its changes or took c's"
    assert _same(source_uri, sink_uri, "c"), "c lost its changes"
    assert _ok(second, "b").changes == 18 and _ok(second, "c").changes == 18


def _two_in_step(source_uri: str, sink_uri: str, slot: str) -> list[GroupMember]:
    execute(source_uri, _table_sql("a") + _table_sql("b"))
    members = [_member(n, connector(sink_uri)) for n in ("a", "b")]
    _run(source_uri, slot, members)
    _change(source_uri, "a", 0)
    _change(source_uri, "b", 1)
    return members


def test_the_shared_slot_dropped_behind_pgflows_back_is_an_error_and_reset_recovers(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    members = _two_in_step(source_uri, sink_uri, slot)
    drop_slots(source_uri, slot)
    with pytest.raises(ReplicationError, match=f"replication slot {slot} does not exist"):
        _run(source_uri, slot, members)
    # Resetting one member makes a new slot; the other's changes are gone from it: it says so.
    reset_a = [_member("a", connector(sink_uri), reset=True), members[1]]
    outcome = _run(source_uri, slot, reset_a)
    assert _ok(outcome, "a").snapshot is not None and _same(source_uri, sink_uri, "a")
    assert isinstance(outcome["b"], ReplicationError)
    assert f"{slot} does not exist" in str(outcome["b"]) and "reset: true" in str(outcome["b"])
    reset_b = [members[0], _member("b", connector(sink_uri), reset=True)]
    _ok(_run(source_uri, slot, reset_b), "b")
    _change(source_uri, "a", 11)
    _change(source_uri, "b", 12)
    last = _run(source_uri, slot, members)
    assert _ok(last, "a").changes == 18 and _ok(last, "b").changes == 18
    assert _same(source_uri, sink_uri, "a") and _same(source_uri, sink_uri, "b")


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
    assert _wal_status(source_uri, slot) == "lost"


def test_an_invalidated_shared_slot_is_an_error_and_reset_recovers(
    source_uri: str, sink_uri: str, group_slot: str, small_slot_wal_limit: None
) -> None:
    slot, members = group_slot, _two_in_step(source_uri, sink_uri, group_slot)
    _invalidate(source_uri, slot)
    with pytest.raises(ReplicationError, match="was invalidated") as raised:
        _run(source_uri, slot, members)
    assert "max_slot_wal_keep_size" in str(raised.value) and "reset: true" in str(raised.value)
    reset = [_member(n, connector(sink_uri), reset=True) for n in ("a", "b")]
    outcome = _run(source_uri, slot, reset)
    assert _ok(outcome, "a").snapshot is not None and _ok(outcome, "b").snapshot is not None
    assert _wal_status(source_uri, slot) == "reserved"
    _change(source_uri, "b", 3)
    after = _run(source_uri, slot, members)
    assert _ok(after, "b").changes == 18 and _ok(after, "a").changes == 0
    assert _same(source_uri, sink_uri, "a") and _same(source_uri, sink_uri, "b")


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


def test_no_free_slot_for_a_live_adds_temporary_slot_names_max_replication_slots(
    one_slot_cluster: Callable[[str], str],
) -> None:
    source_uri, sink_uri = one_slot_cluster("source"), one_slot_cluster("sink")
    execute(source_uri, "".join(_table_sql(n) for n in NAMES))
    sink = connector(sink_uri)
    two = [_member(n, sink) for n in "ab"]
    _ok(_run(source_uri, "grp_slot", two), "a")
    with pytest.raises(ReplicationError) as raised:
        _run(source_uri, "grp_slot", [*two, _member("c", sink)])
    words = ("max_replication_slots", "temporary slot", "grp_slot_backfill_")
    assert all(w in str(raised.value) for w in words)
    # Nothing was consumed: the group without the newcomer carries on, exactly once.
    _change(source_uri, "a", 1)
    again = _run(source_uri, "grp_slot", two)
    assert _ok(again, "a").changes == 18 and _ok(again, "b").changes == 0
    assert _same(source_uri, sink_uri, "a") and _same(source_uri, sink_uri, "b")


@pytest.mark.xfail(
    strict=True,
    reason="engine: a live add's temporary slot that cannot be made fails the whole run "
    "(backfill raises); the members already streaming do not apply their changes",
)
def test_no_free_slot_for_a_live_add_stops_only_the_newcomer(
    one_slot_cluster: Callable[[str], str],
) -> None:
    source_uri, sink_uri = one_slot_cluster("source"), one_slot_cluster("sink")
    execute(source_uri, _table_sql("a") + _table_sql("b"))
    sink = connector(sink_uri)
    _ok(_run(source_uri, "grp_slot", [_member("a", sink)]), "a")
    _change(source_uri, "a", 1)
    outcome = _run(source_uri, "grp_slot", [_member("a", sink), _member("b", sink)])
    assert isinstance(outcome["b"], ReplicationError)
    assert "max_replication_slots" in str(outcome["b"])
    assert _ok(outcome, "a").changes == 18 and _same(source_uri, sink_uri, "a")


def _unreachable(**_: Any) -> NoReturn:
    """A sink that refuses connections, as a stopped warehouse does."""
    raise psycopg.OperationalError("connection to the warehouse refused (test)")


UNREACHABLE_BUG = (
    "engine: a selected member whose sink cannot be opened fails in _hold_targets, so "
    "read_members skips it and its stored position is never read: it does not hold the slot, "
    "which is confirmed past its position, and its changes are consumed unapplied"
)


@pytest.mark.xfail(strict=True, reason=UNREACHABLE_BUG)
def test_an_unreachable_sink_stops_only_its_members_and_holds_the_slot(
    source_uri: str, sink_uri: str, fresh_db: str, group_slot: str
) -> None:
    slot, other_uri = group_slot, fresh_db
    execute(source_uri, _table_sql("a") + _table_sql("b"))
    a = _member("a", connector(sink_uri), sink_id="one")
    b = _member("b", connector(other_uri), sink_id="two")
    _run(source_uri, slot, [a, b])
    held = _position(other_uri, "b")
    assert held is not None
    _change(source_uri, "a", 1)
    _change(source_uri, "b", 2)
    down = _member("b", _unreachable, sink_id="two")
    outcome = _run(source_uri, slot, [a, down])
    assert isinstance(outcome["b"], psycopg.OperationalError)
    assert _ok(outcome, "a").changes == 18 and _same(source_uri, sink_uri, "a")
    confirmed = _confirmed(source_uri, slot)
    assert confirmed is not None and confirmed <= held, "the slot moved past b's position"
    back = _run(source_uri, slot, [a, b])
    assert _ok(back, "b").changes == 18 and _ok(back, "a").changes == 0
    assert _same(source_uri, other_uri, "b")


def test_a_sink_failing_mid_run_stops_only_its_member_and_holds_the_slot(
    source_uri: str, sink_uri: str, fresh_db: str, group_slot: str
) -> None:
    """b's sink (a database of its own) refuses b's batch: a and c apply, the slot stays at
    b's position, and once the sink takes it again b's next run applies it exactly once."""
    slot, other_uri = group_slot, fresh_db
    execute(source_uri, "".join(_table_sql(n) for n in NAMES))
    sinks = {"a": (sink_uri, "one"), "c": (sink_uri, "one"), "b": (other_uri, "two")}
    members = [_member(n, connector(uri), sink_id=sid) for n, (uri, sid) in sinks.items()]
    _run(source_uri, slot, members)
    held = _position(other_uri, "b")
    assert held is not None
    for offset, name in enumerate(NAMES):
        _change(source_uri, name, offset)
    refuse = "ALTER TABLE landing.b ADD CONSTRAINT refuse CHECK (qty < 100) NOT VALID"
    execute(other_uri, refuse)
    outcome = _run(source_uri, slot, members)
    assert isinstance(outcome["b"], psycopg.errors.CheckViolation)
    assert _ok(outcome, "a").changes == 18 and _ok(outcome, "c").changes == 18
    assert _same(source_uri, sink_uri, "a") and _same(source_uri, sink_uri, "c")
    confirmed = _confirmed(source_uri, slot)
    assert confirmed is not None and confirmed <= held, "the slot moved past b's position"
    assert _position(other_uri, "b") == held and not _same(source_uri, other_uri, "b")
    execute(other_uri, "ALTER TABLE landing.b DROP CONSTRAINT refuse")
    back = _run(source_uri, slot, members)
    assert _ok(back, "b").changes == 18 and _ok(back, "a").changes == 0
    assert all(_same(source_uri, uri, n) for n, (uri, _) in sinks.items())
    assert _confirmed(source_uri, slot) == min(_position(u, n) or 0 for n, (u, _) in sinks.items())


def _subset_world(source_uri: str, sink_uri: str, slot: str) -> list[GroupMember]:
    """Three members in step, then 18 changes to each table; b's position must hold the slot."""
    execute(source_uri, "".join(_table_sql(n) for n in NAMES))
    members = [_member(n, connector(sink_uri)) for n in NAMES]
    _run(source_uri, slot, members)
    for offset, name in enumerate(NAMES):
        _change(source_uri, name, offset)
    return members


def test_a_subset_run_keeps_the_other_members_changes(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    members = _subset_world(source_uri, sink_uri, slot)
    b_before, c_before = _position(sink_uri, "b"), _position(sink_uri, "c")
    only_a = _run(source_uri, slot, members, selected=["a"])
    assert set(only_a) == {"a"} and _ok(only_a, "a").changes == 18
    assert _same(source_uri, sink_uri, "a") and not _same(source_uri, sink_uri, "b")
    assert (_position(sink_uri, "b"), _position(sink_uri, "c")) == (b_before, c_before)
    confirmed = _confirmed(source_uri, slot)
    assert confirmed is not None and b_before is not None and confirmed <= b_before
    _change(source_uri, "a", 5)
    everyone = _run(source_uri, slot, members)
    assert _ok(everyone, "a").changes == 18, "a applies its own later change only"
    assert _ok(everyone, "b").changes == 18 and _ok(everyone, "c").changes == 18
    assert all(_same(source_uri, sink_uri, n) for n in NAMES)
    positions = [_position(sink_uri, n) for n in NAMES]
    assert _confirmed(source_uri, slot) == min(p or 0 for p in positions)
    again = _run(source_uri, slot, members)
    assert all(_ok(again, n).changes == 0 for n in NAMES), "nothing is applied twice"


@pytest.mark.xfail(strict=True, reason=INDEX_BUG)
def test_a_subset_run_of_a_later_member_applies_its_kept_changes(
    source_uri: str, sink_uri: str, group_slot: str
) -> None:
    slot = group_slot
    members = _subset_world(source_uri, sink_uri, slot)
    only_b = _run(source_uri, slot, members, selected=["b"])
    assert _ok(only_b, "b").changes == 18 and _same(source_uri, sink_uri, "b")
    assert not _same(source_uri, sink_uri, "a") and not _same(source_uri, sink_uri, "c")

"""Many tables through ONE slot: read once, applied per table in its own transaction with its
position, the slot confirmed to the group's lowest position; subsets, live adds, removals,
column lists and sinks of their own."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from pgflow.flows.cdc import backfill
from pgflow.sinks.postgres import state
from pgflow.sources import cdc
from pgflow_tests.flows.cdc.group_support import (
    member,
    results,
    run_group,
    same_table,
    tables_sql,
)
from pgflow_tests.pg import execute, fetch

NAMES = ("alpha", "beta", "gamma")


def slots(uri: str) -> list[tuple[str, bool]]:
    return fetch(uri, "SELECT slot_name, temporary FROM pg_replication_slots ORDER BY 1")


def position(sink_uri: str, name: str) -> int:
    with psycopg.connect(sink_uri) as conn:
        stored = state.read_position(conn, member(name, sink_uri).target.table)
    assert stored is not None
    return cdc.lsn_to_int(stored.value)


def confirmed(source_uri: str, slot: str) -> int:
    with psycopg.connect(source_uri) as conn:
        info = cdc.slot_info(conn, slot)
    assert info is not None and info.confirmed_flush is not None
    return info.confirmed_flush


def test_three_tables_share_one_slot_and_each_gets_its_changes(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, tables_sql(*NAMES))
    group = [member(n, sink_uri) for n in NAMES]
    first = results(run_group(source_uri, slot, group))
    assert all(r.snapshot and r.snapshot.rows == 100 for r in first.values())
    execute(
        source_uri,
        "BEGIN; UPDATE public.alpha SET label = 'x' WHERE id <= 10;"
        " DELETE FROM public.beta WHERE id > 90; INSERT INTO public.alpha VALUES (500, 'new');"
        " COMMIT; UPDATE public.gamma SET tags = '[0:1]={7,8}' WHERE id = 3;",
    )
    second = results(run_group(source_uri, slot, group))
    assert [second[n].changes for n in NAMES] == [11, 10, 1]
    assert all(same_table(source_uri, sink_uri, n) for n in NAMES)
    assert slots(source_uri) == [(slot, False)], "one slot for the group, no other left"
    low = min(position(sink_uri, n) for n in NAMES)
    assert confirmed(source_uri, slot) == low


def test_a_subset_run_keeps_the_other_tables_changes_in_the_slot(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, tables_sql(*NAMES))
    group = [member(n, sink_uri) for n in NAMES]
    results(run_group(source_uri, slot, group))
    before_beta = position(sink_uri, "beta")
    execute(source_uri, "UPDATE public.alpha SET label = 'a'; UPDATE public.beta SET label = 'b'")
    only_alpha = results(run_group(source_uri, slot, group, selected=["alpha"]))
    assert list(only_alpha) == ["alpha"] and only_alpha["alpha"].changes == 100
    assert same_table(source_uri, sink_uri, "alpha")
    assert not same_table(source_uri, sink_uri, "beta"), "beta was not selected"
    assert confirmed(source_uri, slot) <= before_beta, "beta's changes stay in the slot"
    rest = results(run_group(source_uri, slot, group, selected=["beta", "gamma"]))
    assert rest["beta"].changes == 100 and rest["gamma"].changes == 0
    again = results(run_group(source_uri, slot, group))
    assert all(r.changes == 0 for r in again.values()), "nothing applied twice"
    assert all(same_table(source_uri, sink_uri, n) for n in NAMES)


def test_a_table_joins_the_group_while_the_others_keep_their_place(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, tables_sql(*NAMES))
    group = [member(n, sink_uri) for n in NAMES[:2]]
    results(run_group(source_uri, slot, group))
    execute(
        source_uri, "UPDATE public.alpha SET label = 'before'; UPDATE public.gamma SET amount = -1"
    )
    grown = [*group, member("gamma", sink_uri)]
    joined = results(run_group(source_uri, slot, grown))
    assert joined["gamma"].snapshot_reason == "first run: no stored position"
    assert joined["alpha"].changes == 100 and joined["gamma"].changes == 0
    assert slots(source_uri) == [(slot, False)], "the backfill's temporary slot is gone"
    execute(source_uri, "UPDATE public.gamma SET label = 'after' WHERE id <= 5")
    later = results(run_group(source_uri, slot, grown))
    assert later["gamma"].changes == 5
    assert all(same_table(source_uri, sink_uri, n) for n in NAMES)


def test_a_removed_table_leaves_the_publication(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, tables_sql(*NAMES))
    results(run_group(source_uri, slot, [member(n, sink_uri) for n in NAMES]))
    results(run_group(source_uri, slot, [member(n, sink_uri) for n in NAMES[:2]]))
    published = fetch(
        source_uri,
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1",
        (slot,),
    )
    assert published == [("alpha",), ("beta",)]
    assert slots(source_uri) == [(slot, False)], "the shared slot stays"


def test_include_columns_publish_and_load_only_those_columns(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, tables_sql("alpha"))
    group = [member("alpha", sink_uri, include_columns=("id", "amount"))]
    results(run_group(source_uri, slot, group))
    execute(source_uri, "UPDATE public.alpha SET amount = amount * 2, label = 'hidden'")
    assert results(run_group(source_uri, slot, group))["alpha"].changes == 100
    columns = fetch(
        sink_uri,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'landing'"
        " AND table_name = 'alpha' ORDER BY ordinal_position",
    )
    assert columns == [("id",), ("amount",)]
    assert same_table(source_uri, sink_uri, "alpha", "id, amount")


def test_members_on_two_sinks_and_one_that_fails_alone(
    source_uri: str, sink_uri: str, fresh_db: str, slot: str
) -> None:
    execute(source_uri, tables_sql("alpha", "beta"))
    good = member("alpha", sink_uri)
    other = member("beta", fresh_db, sink_id="other")
    results(run_group(source_uri, slot, [good, other]))
    assert same_table(source_uri, fresh_db, "beta")
    held = position(fresh_db, "beta")
    execute(source_uri, "UPDATE public.alpha SET label = 'a'; UPDATE public.beta SET label = 'b'")

    def refused(**kwargs: Any) -> Any:
        raise psycopg.OperationalError("the other warehouse is down")

    down = member("beta", fresh_db, sink_id="other", connect_sink=refused)
    outcome = run_group(source_uri, slot, [good, down])
    assert isinstance(outcome["beta"], psycopg.OperationalError)
    assert results({"alpha": outcome["alpha"]})["alpha"].changes == 100
    assert confirmed(source_uri, slot) <= held, "the slot waits for the failed sink"
    back = results(run_group(source_uri, slot, [good, other]))
    assert back["beta"].changes == 100 and back["alpha"].changes == 0
    assert same_table(source_uri, sink_uri, "alpha") and same_table(source_uri, fresh_db, "beta")


def test_a_table_that_cannot_feed_cdc_fails_alone(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(
        source_uri,
        tables_sql("alpha", "beta") + "ALTER TABLE public.beta REPLICA IDENTITY NOTHING",
    )
    outcome = run_group(source_uri, slot, [member("alpha", sink_uri), member("beta", sink_uri)])
    error = outcome["beta"]
    assert isinstance(error, cdc.ReplicationError) and "REPLICA IDENTITY" in str(error)
    assert same_table(source_uri, sink_uri, "alpha")
    published = fetch(
        source_uri, "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (slot,)
    )
    assert published == [("alpha",)], "never published: its updates would fail at the source"


def test_the_others_stream_while_a_joining_table_loads(
    source_uri: str, sink_uri: str, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The joining table's load waits until alpha's pending change is in its target: it only
    gets there if alpha streams while the load runs (in a thread, on a connection of its own)."""
    execute(source_uri, tables_sql(*NAMES))
    group = [member(n, sink_uri) for n in NAMES[:2]]
    results(run_group(source_uri, slot, group))
    execute(source_uri, "UPDATE public.alpha SET label = 'during' WHERE id = 1")
    original = backfill.start_member
    seen: list[str] = []

    def slow_start(*args: Any) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            label = fetch(sink_uri, "SELECT label FROM landing.alpha WHERE id = 1")[0][0]
            if label == "during":
                seen.append(label)
                break
            time.sleep(0.1)
        original(*args)

    monkeypatch.setattr(backfill, "start_member", slow_start)
    grown = [*group, member("gamma", sink_uri)]
    joined = results(run_group(source_uri, slot, grown))
    assert seen == ["during"], "alpha was applied while gamma loaded"
    assert joined["alpha"].changes == 1 and joined["gamma"].snapshot is not None
    execute(source_uri, "UPDATE public.gamma SET label = 'after' WHERE id <= 2")
    assert results(run_group(source_uri, slot, grown))["gamma"].changes == 2
    assert all(same_table(source_uri, sink_uri, n) for n in NAMES)
    assert slots(source_uri) == [(slot, False)]

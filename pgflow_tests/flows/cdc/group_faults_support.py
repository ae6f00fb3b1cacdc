"""Helpers of the CDC group fault tests (test_group_faults.py): small tables, a change of
18 row changes, members on a sink, a run of the group and what it left."""

from __future__ import annotations

from typing import Any

import psycopg

from pgflow.config.model import TableName
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import GroupOutcome, replicate_group
from pgflow.flows.cdc.model import CdcResult, CdcTarget, ConnectSink
from pgflow.sinks.postgres import state
from pgflow.sources.cdc import slot_info
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.flows.cdc.conftest import MERGE, connector
from pgflow_tests.pg import execute, fetch, table_text

NAMES = ("a", "b", "c")
ROWS = 300


def table_sql(name: str, primary_key: bool = True) -> str:
    key = "PRIMARY KEY" if primary_key else "NOT NULL"
    return (
        f"CREATE TABLE public.{name} (id bigint {key}, qty integer NOT NULL, note text);"
        f"INSERT INTO public.{name} SELECT g, g % 13, 'n' || g FROM generate_series(1, {ROWS}) g;"
    )


def change(uri: str, name: str, offset: int) -> None:
    """10 updates, 5 inserts, 3 deletes in one transaction: 18 changes."""
    execute(
        uri,
        f"UPDATE public.{name} SET qty = qty + 100 WHERE id <= {ROWS} AND id % 30 = {offset % 30};"
        f"INSERT INTO public.{name} SELECT g, 1, 'new' FROM generate_series("
        f"{10_000 + offset * 10}, {10_000 + offset * 10 + 4}) g;"
        f"DELETE FROM public.{name} WHERE id IN ({offset + 100}, {offset + 130}, {offset + 160});",
    )


def member_of(name: str, sink: ConnectSink, sink_id: str = "sink", **kw: Any) -> GroupMember:
    return GroupMember(
        pipeline=name,
        table=TableName("public", name),
        target=CdcTarget(TableName("landing", name), MERGE),
        connect_sink=sink,
        sink_id=sink_id,
        **kw,
    )


def run_group(
    source_uri: str, slot: str, members: list[GroupMember], selected: Any = None
) -> GroupOutcome:
    chosen = [m.pipeline for m in members] if selected is None else selected
    settings = GroupSettings(name="grp", slot=slot, publication=slot)
    return replicate_group(connector(source_uri), settings, members, chosen)


def ok(outcome: GroupOutcome, name: str) -> CdcResult:
    result = outcome[name]
    assert isinstance(result, CdcResult), f"{name} failed: {result!r}"
    return result


def same_rows(source_uri: str, sink_uri: str, name: str) -> bool:
    return table_text(source_uri, f"public.{name}") == table_text(sink_uri, f"landing.{name}")


def position_of(sink_uri: str, name: str) -> int | None:
    with psycopg.connect(sink_uri) as conn:
        stored = state.read_position(conn, TableName("landing", name))
    return None if stored is None else lsn_to_int(stored.value)


def confirmed_at(source_uri: str, slot: str) -> int | None:
    with psycopg.connect(source_uri) as conn:
        info = slot_info(conn, slot)
    return None if info is None else info.confirmed_flush


def wal_status(source_uri: str, slot: str) -> str:
    query = "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s"
    return str(fetch(source_uri, query, (slot,))[0][0])


def backfill_slots(source_uri: str) -> list[str]:
    rows = fetch(source_uri, "SELECT slot_name FROM pg_replication_slots")
    return [r[0] for r in rows if "_backfill_" in r[0]]

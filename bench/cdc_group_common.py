"""What the shared-slot benches (bench/cdc_group.py) share: the source tables and the changes
made to them, a group's members on the sink, one group run, the check of every target, the
WAL a set of slots retains, and the measured group call of the throughput part (a subprocess:
`python -m bench.cdc_group --measure SETTINGS`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bench.cdc_measure import Timers, breakdown, connector, instrument, measuring, profile_text
from bench.cdc_measure import strategy as merge_strategy
from bench.cdc_pipelines import checksum
from bench.common import ORDERS_DDL, ORDERS_FILL
from pgflow.config.model import TableName
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import replicate_group
from pgflow.flows.cdc.model import CdcResult, CdcTarget
from pgflow.localdb import network

POLICY = os.environ.get("BENCH_CDC_GROUP_POLICY", "delete_insert")
# Server settings of the group bench's source: 50 slots of their own + the group's + the
# one-table baseline + a backfill's temporary slot; walsenders for the streams. LocalPostgres
# passes its own (20) on the server's command line, where ALTER SYSTEM cannot override them:
# `more_slots` raises them there, for the clusters this process starts meanwhile.
SOURCE_SETTINGS = {"max_replication_slots": "64", "max_wal_senders": "64"}


@contextmanager
def more_slots() -> Iterator[None]:
    saved = dict(network.SERVER_SETTINGS)
    network.SERVER_SETTINGS.update(SOURCE_SETTINGS)
    try:
        yield
    finally:
        network.SERVER_SETTINGS.clear()
        network.SERVER_SETTINGS.update(saved)


# cdc.py's mixed scenario, rows found through the key: transaction k touches the ids with
# id % groups = k (spread over the table, as an OLTP workload's), without scanning the table.
SPREAD = (
    "ARRAY(SELECT g FROM generate_series(%(k)s::bigint, %(base)s, %(groups)s) g"
    " WHERE (g / %(groups)s) %% 5 {}))"
)
UPDATE = f"""
UPDATE {{table}} SET status = 'changed', amount = amount + 1, updated_at = clock_timestamp(),
       attrs = attrs || jsonb_build_object('rev', %(k)s)
WHERE id = ANY({SPREAD.format("< 2")}
"""
DELETE = f"""
DELETE FROM {{table}} WHERE id = ANY({SPREAD.format("= 2")}
"""


@dataclass(frozen=True)
class Group:
    """A group of bench tables on one slot: source tables and their targets' schema."""

    slot: str
    tables: tuple[str, ...]
    target_schema: str

    def members(self, sink_uri: str) -> list[GroupMember]:
        target = merge_strategy(POLICY)
        return [
            GroupMember(
                pipeline=f"{self.slot}_{name}",
                table=TableName("public", name),
                target=CdcTarget(TableName(self.target_schema, name), target),
                connect_sink=connector(sink_uri),
                sink_id="sink",
            )
            for name in self.tables
        ]

    def settings(self) -> GroupSettings:
        return GroupSettings(name=self.slot, slot=self.slot, publication=self.slot)

    def run(self, source_uri: str, sink_uri: str) -> dict[str, CdcResult]:
        """One run of the whole group; raises the first member's error."""
        members = self.members(sink_uri)
        outcome = replicate_group(
            connector(source_uri), self.settings(), members, {m.pipeline for m in members}
        )
        return {name: _result(name, value) for name, value in outcome.items()}

    def check(self, source_uri: str, sink_uri: str) -> list[str]:
        """The tables whose target differs from the source (count and checksum)."""
        return [
            name
            for name in self.tables
            if checksum(source_uri, TableName("public", name))
            != checksum(sink_uri, TableName(self.target_schema, name))
        ]


def _result(name: str, value: CdcResult | BaseException) -> CdcResult:
    if isinstance(value, BaseException):
        raise RuntimeError(f"group member {name} failed: {value}") from value
    return value


def create_tables(uri: str, names: Sequence[str], base_rows: int) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        for name in names:
            conn.execute(ORDERS_DDL.format(table=name))  # type: ignore[arg-type]
            if base_rows:
                conn.execute(ORDERS_FILL.format(table=name), {"lo": 1, "hi": base_rows})  # type: ignore[arg-type]
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(name)))


def insert_round_robin(uri: str, names: Sequence[str], changes: int, tx_rows: int) -> int:
    """`changes` inserts, transactions of `tx_rows` rows, the tables taking turns."""
    made = 0
    next_id = {name: 1 for name in names}
    with psycopg.connect(uri) as conn:
        for turn, lo in enumerate(range(0, changes, tx_rows)):
            name = names[turn % len(names)]
            rows = min(tx_rows, changes - lo)
            first = next_id[name]
            with conn.transaction():
                made += conn.execute(
                    ORDERS_FILL.format(table=name),  # type: ignore[arg-type]
                    {"lo": first, "hi": first + rows - 1},
                ).rowcount
            next_id[name] = first + rows
    return made


def mixed_round_robin(uri: str, names: Sequence[str], base_rows: int, tx_rows: int) -> int:
    """cdc.py's mixed scenario on every table (base_rows changes each: per transaction 40%
    inserts, 40% updates, 20% deletes), the tables' transactions taking turns."""
    groups = max(1, -(-base_rows // tx_rows))
    inserted = tx_rows * 4 // 10
    made = 0
    with psycopg.connect(uri) as conn:
        for k in range(groups):
            first = base_rows + 1 + k * inserted
            params = {"k": k, "groups": groups, "base": base_rows}
            for name in names:
                with conn.transaction():
                    made += conn.execute(UPDATE.format(table=name), params).rowcount  # type: ignore[arg-type]
                    made += conn.execute(DELETE.format(table=name), params).rowcount  # type: ignore[arg-type]
                    made += conn.execute(
                        ORDERS_FILL.format(table=name),  # type: ignore[arg-type]
                        {"lo": first, "hi": first + inserted - 1},
                    ).rowcount
    return made


def retained_wal_mb(uri: str, slots: Sequence[str], column: str = "restart_lsn") -> float:
    """MB of WAL the server keeps for `slots`: from their oldest restart_lsn to the current
    WAL position (column confirmed_flush_lsn: the WAL not yet confirmed by the oldest)."""
    query = sql.SQL(
        "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), min({})), 0)"
        " FROM pg_replication_slots WHERE slot_name = ANY(%s)"
    ).format(sql.Identifier(column))
    with psycopg.connect(uri) as conn:
        row = conn.execute(query, (list(slots),)).fetchone()
    assert row is not None
    return float(row[0]) / 1e6


def measured_group_call(settings: dict[str, Any]) -> dict[str, Any]:
    """One run of the group (in this subprocess, after its snapshot run): its figures."""
    timers = Timers()
    if settings["breakdown"]:
        instrument(timers)
    group = Group(settings["slot"], tuple(settings["tables"]), settings["target_schema"])
    profile = None
    if settings["profile"]:
        import cProfile

        profile = cProfile.Profile()
    with measuring(settings, profile) as figures:
        results = group.run(settings["source"], settings["sink"])
    if any(r.snapshot is not None for r in results.values()):
        raise RuntimeError("the measured group call took a snapshot")
    batches = [b for r in results.values() for b in r.batches]
    return {
        **figures,
        "changes": sum(r.changes for r in results.values()),
        "batches": len(batches),
        "rows_applied": sum(r.rows_applied for r in results.values()),
        "parts": breakdown(figures["wall"], timers.seconds) if settings["breakdown"] else None,
        "statements": dict(timers.statements),
        "profile": profile_text(profile),
    }

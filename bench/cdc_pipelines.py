"""The CDC bench's pipelines (bench/cdc.py) on its two clusters: a scenario and its pipelines,
each pipeline's first run (the initial snapshot), the check of a target against its source, the
WAL a slot went over, and the slots dropped once a scenario is measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.cdc_measure import connector, strategy
from pgflow.config.model import TableName
from pgflow.flows.cdc.model import CdcSettings, CdcTarget
from pgflow.flows.cdc.run import replicate

COLUMNS = "id, customer_id, status, amount, note, tags, attrs, created_at, updated_at, paid, ref"
CHECKSUM = (
    f"SELECT count(*), coalesce(sum(hashtext(ROW({COLUMNS})::text)::bigint), 0) FROM {{table}}"
)
# The same text of every value on both sides.
CHECK_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=1"


@dataclass(frozen=True)
class Scenario:
    name: str
    base_rows: int
    make_changes: Callable[[psycopg.Connection, str], int]  # changes made on the source
    describe: str


@dataclass
class Pipeline:
    scenario: Scenario
    policy: str
    source_table: TableName
    target: TableName
    slot: str
    figures: dict[str, Any] | None = None
    valid: bool = False
    snapshot_s: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.scenario.name} / {self.policy}"


def snapshot(pipeline: Pipeline, source_uri: str, sink_uri: str) -> None:
    """The pipeline's first run: its slot and the initial snapshot (not measured as CDC)."""
    started = time.perf_counter()
    result = replicate(
        connector(source_uri),
        connector(sink_uri),
        pipeline.source_table,
        CdcTarget(pipeline.target, strategy(pipeline.policy)),
        CdcSettings(slot=pipeline.slot, publication=pipeline.slot),
        pipeline=pipeline.slot,
    )
    pipeline.snapshot_s = time.perf_counter() - started
    assert result.snapshot is not None and not result.batches


def checksum(uri: str, table: TableName) -> tuple[int, int]:
    query = CHECKSUM.format(table=f'"{table.schema}"."{table.name}"')
    with psycopg.connect(uri, options=CHECK_OPTIONS) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0]), int(row[1])


def wal_mb(source_uri: str, lsns: list[str | None]) -> float | None:
    if None in lsns:
        return None
    with psycopg.connect(source_uri) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", lsns[::-1]).fetchone()
    return float(row[0]) / 1e6 if row else None


def drop_slots(source_uri: str, pipelines: list[Pipeline]) -> None:
    """Slots pin WAL: drop a scenario's once it is measured."""
    with psycopg.connect(source_uri, autocommit=True) as conn:
        for p in pipelines:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s",
                (p.slot,),
            )
            conn.execute(f'DROP PUBLICATION IF EXISTS "{p.slot}"')

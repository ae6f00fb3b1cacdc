"""Helpers for incremental-source tests: run a load with a given reader, read stored state;
the pgoutput tests' open_slot fixture (a logical slot dropped at the end, pass or fail)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres.state import read_position
from pgflow.sources.base import Position, TableSource
from pgflow_tests.pg import execute
from pgflow_tests.sources.pgoutput_support import OpenSlot, Slot, database_name, drop_slot

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
SOURCE = TableName("public", "orders")
TARGET = TableName("landing", "orders")
MakeSource = Callable[[psycopg.Connection], TableSource]


def incremental_load(
    source_uri: str,
    sink_uri: str,
    make_source: MakeSource,
    strategy: StrategySpec = MERGE,
    *,
    reset: bool = False,
) -> LoadResult:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        return load_table(dst, make_source(src), TARGET, strategy, pipeline="orders", reset=reset)


def stored_position(sink_uri: str) -> Position | None:
    with psycopg.connect(sink_uri) as conn:
        return read_position(conn, TARGET)


@pytest.fixture
def open_slot(fresh_db: str) -> Iterator[OpenSlot]:
    """Run setup SQL, then create a pgoutput slot: later changes are what it decodes."""
    created: list[str] = []

    def open_(setup: str) -> Slot:
        execute(fresh_db, setup)
        name = f"s_{database_name(fresh_db)}_{len(created)}"
        execute(fresh_db, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
        created.append(name)
        return Slot(fresh_db, name)

    try:
        yield open_
    finally:
        for name in created:
            drop_slot(fresh_db, name)

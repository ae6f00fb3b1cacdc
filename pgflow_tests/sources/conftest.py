"""Helpers for incremental-source tests: run a load with a given reader, read stored state."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres.state import read_position
from pgflow.sources.base import Position, TableSource

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

"""Helpers for Delta sink tests: run a load from the test source, read the table back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import psycopg
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_load import DeltaLoadResult, load_delta
from pgflow.sources.base import Position
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute, fetch

__all__ = ["delta_rows", "execute", "fetch", "last_commit", "run_delta", "source_rows"]

MakeSource = Callable[[psycopg.Connection, TableName], PostgresTableSource]


def run_delta(
    source_uri: str,
    path: Path,
    strategy: StrategySpec | None = None,
    *,
    table: str = "orders",
    make_source: MakeSource = PostgresTableSource,
    pipeline: str = "orders",
    time_zone: str | None = None,
    **options,
) -> DeltaLoadResult:
    """One load; `time_zone` sets the source session's TimeZone (the load must not care)."""
    strategy = strategy or StrategySpec(mode="full_refresh")
    settings = {"options": f"-c TimeZone={time_zone}"} if time_zone else {}
    with psycopg.connect(source_uri, **settings) as conn:
        source = make_source(conn, TableName("public", table))
        return load_delta(source, str(path), strategy, pipeline=pipeline, **options)


def delta_rows(path: Path, order_by: str | list[str] = "id") -> list[tuple]:
    """The table's rows, sorted (NULLs first), as Python values."""
    return pl.read_delta(str(path)).sort(order_by, nulls_last=False).rows()


def source_rows(uri: str, query: str) -> list[tuple]:
    return fetch(uri, query)


def last_commit(path: Path) -> dict:
    return DeltaTable(str(path)).history(1)[0]


def committed_position(path: Path) -> Position | None:
    text = last_commit(path).get("pgflow.position")
    return Position(**json.loads(text)) if text else None

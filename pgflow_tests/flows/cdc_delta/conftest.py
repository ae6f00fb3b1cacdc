"""CDC into Delta against a real cluster (wal_level=logical) and real Delta tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcResult, CdcSettings, DeltaCdcTarget
from pgflow.flows.cdc.run import replicate
from pgflow.flows.delta_load import load_delta
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.flows.cdc.conftest import connector
from pgflow_tests.pg import drop_slots, slot_name_for

SOURCE = TableName("public", "orders")
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
ORDERS = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL, amount numeric(10,2),
                            note text, tags text[], placed timestamptz DEFAULT now());
INSERT INTO public.orders (id, status, amount, note, tags)
SELECT g, 'new', g * 1.5, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, ARRAY['a', 'b' || g]
FROM generate_series(1, 200) g;
"""


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def execute(uri: str, statements: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statements)  # type: ignore[arg-type]


def run_delta(
    source_uri: str,
    path: Path,
    slot: str,
    strategy: StrategySpec = MERGE,
    *,
    table: TableName = SOURCE,
    pipeline: str = "orders",
    connect_source: Callable[..., Any] | None = None,
    include_columns: tuple[str, ...] | None = None,
    **options: Any,
) -> CdcResult:
    names = ("deleted_column", "on_truncate", "numeric_as", "storage_options")
    target_options = {k: options.pop(k) for k in names if k in options}
    settings = CdcSettings(slot=slot, publication=slot, **options)
    return replicate(
        connect_source or connector(source_uri),
        connector(source_uri),
        table,
        DeltaCdcTarget(str(path), strategy, **target_options),  # type: ignore[arg-type]
        settings,
        pipeline=pipeline,
        include_columns=include_columns,
    )


def delta_frame(path: Path, key: str = "id") -> pl.DataFrame:
    return pl.read_delta(str(path)).sort(key)


def fresh_load(
    source_uri: str,
    table: TableName,
    path: Path,
    strategy: StrategySpec = MERGE,
    **options: Any,
) -> pl.DataFrame:
    """The source loaded whole into another Delta table, the way a snapshot is."""
    with psycopg.connect(source_uri) as conn:
        source = PostgresTableSource(conn, table)
        load_delta(source, str(path), strategy, pipeline="fresh", **options)
    return pl.read_delta(str(path))


def app_version(path: Path, app_id: str) -> int | None:
    return DeltaTable(str(path)).transaction_version(app_id)

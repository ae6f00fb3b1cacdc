"""Helpers of the Delta -> Postgres sync tests: an orders table written to Delta in files,
the sync with small batches, the rows on both sides, failures injected on chosen calls.

The tests run against a real Postgres and real Delta tables (no mocks). Failures are
injected by wrapping functions the sync calls per batch (upsert.apply_batch,
delta.read_batches); a killed backend is killed for real with pg_terminate_backend.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import polars as pl
import psycopg
from deltalake import write_deltalake

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.result import SyncResult
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.flows.delta_sync.settings import SyncSettings
from pgflow_tests.pg import fetch

TARGET = TableName("gold", "orders")

SETTINGS = SyncSettings(
    postgres_batch_size=500,
    delta_batch_size=300,
    postgres_max_retries=3,
    postgres_retry_delay=0.01,
    delta_max_retries=3,
    delta_retry_delay=0.01,
)

COLUMNS = ["id", "customer_id", "status", "amount", "created_at", "note"]

UTC = dt.UTC

START = dt.datetime(2024, 1, 1, tzinfo=UTC)


def orders(lo: int, hi: int) -> pl.DataFrame:
    ids = pl.int_range(lo, hi)
    return pl.select(
        id=ids,
        customer_id=(ids % 97).cast(pl.Int32),
        status=pl.when(ids % 3 == 0).then(pl.lit("new")).otherwise(pl.lit("paid")),
        amount=((ids * 37) % 100_000).cast(pl.Decimal(12, 2)) / 100,
        created_at=pl.lit(START) + pl.duration(minutes=ids),
        note=pl.when(ids % 10 == 0).then(None).otherwise(pl.format("note {}", ids)),
    ).with_columns(pl.col("amount").cast(pl.Decimal(12, 2)))


def write_files(path: str, frame: pl.DataFrame, files: int, **options: Any) -> None:
    """`frame` in `files` appends: the latest version has `files` data files."""
    size = math.ceil(frame.height / files)
    for i in range(files):
        write_deltalake(path, frame.slice(i * size, size), mode="append", **options)


def sync(uri: str | Callable[[], psycopg.Connection], path: str, **options: Any) -> SyncResult:
    options.setdefault("settings", SETTINGS)
    return sync_delta(uri, path, TARGET, ("id",), pipeline="orders", **options)


def target_rows(uri: str, columns: list[str] = COLUMNS) -> list[tuple]:
    return fetch(uri, f"SELECT {', '.join(columns)} FROM gold.orders ORDER BY id")


def delta_rows(path: str, columns: list[str] = COLUMNS) -> list[tuple]:
    return pl.read_delta(path).select(columns).sort("id").rows()


def hashes(uri: str) -> dict[int, tuple[str, dt.datetime]]:
    return {r[0]: (r[1], r[2]) for r in fetch(uri, "SELECT id, hdiff, sync_ldts FROM gold.orders")}


class FailOnCall:
    """Wraps a function; raises `error` on the listed calls (1-based), else delegates."""

    def __init__(self, function: Callable, error: BaseException | None, calls: set[int]):
        self.function = function
        self.error = error
        self.calls = calls
        self.count = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        if self.count in self.calls and self.error is not None:
            raise self.error
        return self.function(*args, **kwargs)

"""Benchmark (not a test): Delta -> Postgres sync throughput and the unchanged re-run.

    .venv/bin/python -m bench.delta_sync            # 1,000,000 rows
    BENCH_ROWS=200000 .venv/bin/python -m bench.delta_sync

An orders-like Delta table (10 data files) is synced into a throwaway local cluster:
- initial: the first sync (target created, every row inserted);
- unchanged re-run: the same version again (skipped by version);
- 1% changed: a new version updating 1% of the rows (copy-on-write rewrites the files
  that hold them: here every file), synced with the default plan (files new since the
  synced version);
- 1% appended: a new version adding one file: only that file is read;
- full pass, nothing changed: every row read, hashed and found unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import shutil
import tempfile
import time

import polars as pl
from deltalake import DeltaTable, write_deltalake

from bench.common import throwaway_cluster
from pgflow.config.model import TableName
from pgflow.flows.delta_sync.result import SyncResult
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.flows.delta_sync.settings import SyncSettings

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
FILES = 10
TARGET = TableName("gold", "orders")


def orders(rows: int) -> pl.DataFrame:
    ids = pl.int_range(0, rows)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    statuses = ["new", "paid", "shipped", "cancelled"]
    return pl.select(
        order_id=ids,
        customer_id=(ids % 50_000).cast(pl.Int32),
        status=pl.lit(pl.Series(statuses)).get(ids % 4),
        amount=((ids * 37) % 100_000).cast(pl.Decimal(12, 2)) / 100,
        currency=pl.when(ids % 2 == 0).then(pl.lit("EUR")).otherwise(pl.lit("USD")),
        created_at=pl.lit(start) + pl.duration(seconds=ids),
        updated_at=pl.lit(start) + pl.duration(seconds=ids * 2),
        note=pl.when(ids % 10 == 0).then(None).otherwise(pl.format("order {} note", ids)),
        items=(ids % 7).cast(pl.Int16),
        shipped=ids % 3 == 0,
    ).with_columns(pl.col("amount").cast(pl.Decimal(12, 2)))


def report(label: str, result: SyncResult, seconds: float) -> None:
    rate = result.rows_read / seconds if result.rows_read else 0
    print(
        f"  {label:<28} {seconds:7.2f} s  {rate:>10,.0f} rows/s  read {result.rows_read:,}"
        f"  ins {result.rows_inserted:,}  upd {result.rows_updated:,}"
        f"  same {result.rows_unchanged:,}  skipped={result.skipped}",
        flush=True,
    )


def timed(label: str, run) -> SyncResult:
    started = time.perf_counter()
    result = run()
    report(label, result, time.perf_counter() - started)
    return result


def main() -> None:
    lake = tempfile.mkdtemp(prefix="pgflow-bench-delta-")
    path = os.path.join(lake, "orders")
    try:
        frame = orders(ROWS)
        size = -(-ROWS // FILES)
        for i in range(FILES):
            write_deltalake(path, frame.slice(i * size, size), mode="append")
        del frame
        print(f"Delta -> Postgres sync, {ROWS:,} orders rows in {FILES} files", flush=True)
        with throwaway_cluster(["sink"]) as cluster:
            uri = cluster.uri("sink")
            settings = SyncSettings.from_env()

            def sync(**options) -> SyncResult:
                return sync_delta(
                    uri, path, TARGET, ("order_id",), pipeline="bench", settings=settings, **options
                )

            timed("initial", sync)
            timed("unchanged re-run", sync)
            DeltaTable(path).update(
                updates={"status": "'refunded'"}, predicate="order_id % 100 = 1"
            )
            timed("1% changed (new files)", sync)
            extra = orders(ROWS + ROWS // 100).slice(ROWS)
            write_deltalake(path, extra, mode="append")
            timed("1% appended (one new file)", sync)
            timed("full pass, nothing changed", lambda: sync(full_pass=True))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"  peak RSS of this process: {peak} MB")
    finally:
        shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()

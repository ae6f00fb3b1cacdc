"""Benchmark (not a test): Postgres -> Delta throughput.

    .venv/bin/python -m pgflow_tests.bench.delta          # 1,000,000 rows
    BENCH_ROWS=200000 .venv/bin/python -m pgflow_tests.bench.delta

The full_refresh bench's orders-like table (bigint, int, numeric(12,2), text, timestamptz,
jsonb, text) is read from a throwaway local cluster into a Delta table in a temporary folder:
- the read alone (COPY CSV + polars parse into Arrow batches, nothing written): the ceiling;
- load_delta full_refresh (overwrite), best of 2;
- load_delta incremental_merge of the whole table onto itself (every row matched, none
  changed: the cost of a merge that rewrites nothing).
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.delta import DeltaLoadResult, load_delta
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.bench.common import throwaway_cluster
from pgflow_tests.bench.full_refresh import FILL, TABLE_DDL

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
TABLE = TableName("public", "bench_rows")


@dataclass(frozen=True)
class Throughput:
    rows: int
    seconds: float
    result: DeltaLoadResult | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def delta_throughput(
    source_uri: str, path: str, strategy: StrategySpec | None = None, table: TableName = TABLE
) -> Throughput:
    """Load `table` into the Delta table at `path` once; rows and wall time of the load."""
    strategy = strategy or StrategySpec(mode="full_refresh")
    started = time.perf_counter()
    with psycopg.connect(source_uri) as conn:
        result = load_delta(PostgresTableSource(conn, table), path, strategy, pipeline="bench")
    return Throughput(result.rows_read, time.perf_counter() - started, result)


def read_throughput(source_uri: str, table: TableName = TABLE) -> Throughput:
    """Only the read: COPY CSV, cut into batches, parsed into Arrow; nothing written."""
    started = time.perf_counter()
    with psycopg.connect(source_uri) as conn:
        source = PostgresTableSource(conn, table)
        source.open()
        read = ArrowRead(source)
        for _ in read.record_batches():
            pass
        source.close()
    return Throughput(read.rows, time.perf_counter() - started)


def report(label: str, run: Throughput) -> None:
    print(f"  {label:<40} {run.seconds:7.2f} s  {run.rows_per_second:>12,.0f} rows/s", flush=True)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="pgflow-bench-delta-"))
    try:
        with throwaway_cluster(["bench_source"]) as info:
            source_uri = info.uri("bench_source")
            with psycopg.connect(source_uri, autocommit=True) as conn:
                conn.execute(TABLE_DDL.format(name="bench_rows"))
                conn.execute(FILL, (ROWS,))
                conn.execute("VACUUM ANALYZE bench_rows")
            path = str(folder / "bench_rows")
            print(f"Postgres -> Delta, {ROWS:,} rows, one local cluster:")
            read = min((read_throughput(source_uri) for _ in range(2)), key=lambda r: r.seconds)
            report("read only (COPY CSV -> Arrow)", read)
            full = min(
                (delta_throughput(source_uri, path) for _ in range(2)), key=lambda r: r.seconds
            )
            report("load_delta full_refresh", full)
            merge = StrategySpec(mode="incremental_merge", unique_key=("id",))
            merged = delta_throughput(source_uri, path, merge)
            report("load_delta incremental_merge (no change)", merged)
            assert full.result is not None
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"full_refresh: {full.result.bytes_read / 1e6:,.0f} MB of CSV read, "
                f"{full.result.bytes_written / 1e6:,.0f} MB of Parquet written in "
                f"{len(full.result.files_added)} file(s); process peak RSS {peak_mb:,.0f} MB"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

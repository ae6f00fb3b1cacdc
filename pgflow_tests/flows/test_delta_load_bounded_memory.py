"""Memory stays bounded: a Delta load streams; it never holds the table in memory.

The load runs in a fresh subprocess whose peak RSS is read from VmHWM (see the Postgres
sink's test). Imports (polars, deltalake, psycopg) and delta-rs' first write (its runtime)
take a fixed ~110 MB, measured in the child as the floor before the load: so the table is
large enough for that floor not to matter, ~620 MB of CSV COPY data streamed in 4 MiB
batches into Parquet row groups of 64Ki rows (a loader that buffered the table would peak
above it). Measured: 245-262 MB peak, 135-152 MB above the floor, and the same peak for a
half or a quarter of the data (~245 MB for ~310 MB, ~234 MB for ~155 MB): bounded, not small.
"""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl

from pgflow_tests.sinks.delta.conftest import execute

ROWS = 600_000  # of ~1 KB each
CHILD = """
import json, re, sys, psycopg, polars as pl
from deltalake import write_deltalake
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_load import load_delta
from pgflow.sources.postgres import PostgresTableSource

def peak_mb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024

uri, path = sys.argv[1:3]
write_deltalake(path + "-warmup", pl.DataFrame({"id": [1]}))  # delta-rs' runtime, once
floor = peak_mb()
with psycopg.connect(uri) as src:
    result = load_delta(PostgresTableSource(src, TableName("public", "wide")), path,
                        StrategySpec(mode="full_refresh"), pipeline="wide")
print(json.dumps({"rows": result.rows, "bytes": result.bytes_read, "floor_mb": floor,
                  "peak_mb": peak_mb()}))
"""


def test_loading_more_data_than_the_process_peak_memory(source_uri, tmp_path):
    execute(source_uri, "CREATE UNLOGGED TABLE wide (id int PRIMARY KEY, body text)")
    execute(
        source_uri,
        f"INSERT INTO wide SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, {ROWS}) g",
    )
    child = subprocess.run(
        [sys.executable, "-c", CHILD, source_uri, str(tmp_path / "wide")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    outcome = json.loads(child.stdout)

    streamed_mb = outcome["bytes"] / 1e6
    assert outcome["rows"] == ROWS
    assert streamed_mb > 600
    assert outcome["peak_mb"] < 0.6 * streamed_mb, outcome
    assert outcome["peak_mb"] - outcome["floor_mb"] < 0.4 * streamed_mb, outcome
    written = pl.scan_delta(str(tmp_path / "wide"))
    summary = written.select(pl.len(), pl.col("body").str.len_bytes().sum()).collect().row(0)
    assert summary == (ROWS, ROWS * 1024)

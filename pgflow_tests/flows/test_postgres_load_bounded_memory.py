"""Memory stays bounded: a load streams; it never holds the table in Python.

The load runs in a fresh subprocess, whose peak RSS is read from VmHWM: unlike ru_maxrss,
which Linux keeps across execve, it cannot include the forking pytest worker's memory. The table streams ~190 MB of
COPY data (values compress well on disk, so it is quick to create); a loader that buffered
the table would peak above that.
"""

from __future__ import annotations

import json
import subprocess
import sys

from pgflow_tests.sinks.postgres.conftest import execute, fetch

STREAMED_MB = 190
CHILD = """
import json, re, sys, psycopg
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import load_table
from pgflow.sources.postgres import PostgresTableSource
source_uri, sink_uri = sys.argv[1:3]
with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
    result = load_table(dst, PostgresTableSource(src, TableName("public", "wide")),
                        TableName("landing", "wide"), StrategySpec(mode="full_refresh"))
print(json.dumps({"rows": result.rows, "bytes": result.bytes, "fmt": result.copy_format,
                  "peak_mb": int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024}))
"""


def test_loading_a_table_larger_than_the_process_peak_memory(source_uri, sink_uri):
    execute(source_uri, "CREATE TABLE wide (id int PRIMARY KEY, body text)")
    execute(
        source_uri,
        "INSERT INTO wide SELECT g, repeat(md5(g::text), 3000) FROM generate_series(1, 2000) g",
    )
    child = subprocess.run(
        [sys.executable, "-c", CHILD, source_uri, sink_uri],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    outcome = json.loads(child.stdout)

    assert outcome["rows"] == 2000
    assert outcome["bytes"] > STREAMED_MB * 1e6
    assert outcome["peak_mb"] < STREAMED_MB * 0.6, outcome  # measured ~50 MB; imports alone ~35 MB
    same = "SELECT count(*), sum(length(body)), md5(string_agg(md5(body), '' ORDER BY id)) FROM {}"
    assert fetch(sink_uri, same.format("landing.wide")) == fetch(source_uri, same.format("wide"))

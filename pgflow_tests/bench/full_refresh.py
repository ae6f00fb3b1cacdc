"""Benchmark (not a test): full_refresh throughput next to the psql COPY pipe.

    make bench            # 1,000,000 rows
    BENCH_ROWS=200000 make bench

Both runs move the same table between two databases of one throwaway local cluster:
- psql:   psql -c "\\copy (SELECT ...) TO STDOUT (FORMAT BINARY)" | psql -c "\\copy t FROM STDIN (FORMAT BINARY)"
          into an empty table with the same primary key (the physical floor: no staging,
          no swap, no transaction around a replace);
- pgflow: load_table() full_refresh, truncate_insert and exchange, into an existing target
          (staging COPY + replace in one transaction + ANALYZE).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.load import load_table
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.bench.common import throwaway_cluster

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
TABLE_DDL = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2),
    status text, created_at timestamptz, payload jsonb, note text
)"""
FILL = """
INSERT INTO bench_rows
SELECT g, g %% 50000, round((random() * 1000)::numeric, 2),
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g %% 4],
       now() - g * interval '1 second', jsonb_build_object('sku', 'SKU-' || g %% 997, 'qty', g %% 7),
       md5(g::text)
FROM generate_series(1, %s) g
"""


def timed(label: str, fn) -> float:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    print(f"  {label:<34} {seconds:7.2f} s  {ROWS / seconds:>12,.0f} rows/s", flush=True)
    return seconds


def psql_pipe(source_uri: str, sink_uri: str) -> None:
    with psycopg.connect(sink_uri, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_psql")
    out = subprocess.Popen(
        ["psql", source_uri, "-qc", "\\copy (SELECT * FROM bench_rows) TO STDOUT (FORMAT BINARY)"],
        stdout=subprocess.PIPE,
    )
    subprocess.run(
        ["psql", sink_uri, "-qc", "\\copy bench_psql FROM STDIN (FORMAT BINARY)"],
        stdin=out.stdout,
        check=True,
    )
    assert out.wait() == 0


def pgflow_load(source_uri: str, sink_uri: str, method: str) -> None:
    strategy = StrategySpec(mode="full_refresh", method=method)  # type: ignore[arg-type]
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = PostgresTableSource(src, TableName("public", "bench_rows"))
        result = load_table(dst, source, TableName("landing", "bench_rows"), strategy)
    assert result.rows == ROWS and result.copy_format == "binary"


def main() -> None:
    with throwaway_cluster(["bench_source", "bench_sink"]) as info:
        source_uri, sink_uri = info.uri("bench_source"), info.uri("bench_sink")
        with psycopg.connect(source_uri, autocommit=True) as conn:
            conn.execute(TABLE_DDL.format(name="bench_rows"))
            conn.execute(FILL, (ROWS,))
            conn.execute("VACUUM ANALYZE bench_rows")
            size = conn.execute("SELECT pg_size_pretty(pg_table_size('bench_rows'))").fetchone()
        with psycopg.connect(sink_uri, autocommit=True) as conn:
            conn.execute(TABLE_DDL.format(name="bench_psql"))
        print(
            f"full_refresh of {ROWS:,} rows ({size[0] if size else '?'} on disk), one local cluster:"
        )
        pgflow_load(source_uri, sink_uri, "truncate_insert")  # first load creates the target
        floor = min(
            timed("psql \\copy binary pipe", lambda: psql_pipe(source_uri, sink_uri))
            for _ in range(2)
        )
        truncate = min(
            timed(
                "pgflow truncate_insert",
                lambda: pgflow_load(source_uri, sink_uri, "truncate_insert"),
            )
            for _ in range(2)
        )
        swap = min(
            timed("pgflow exchange", lambda: pgflow_load(source_uri, sink_uri, "exchange"))
            for _ in range(2)
        )
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # own process: no exec
        print(
            f"best of 2: psql {ROWS / floor:,.0f} rows/s; pgflow truncate_insert "
            f"{ROWS / truncate:,.0f} rows/s ({floor / truncate:.0%} of psql); exchange "
            f"{ROWS / swap:,.0f} rows/s ({floor / swap:.0%}); pgflow process peak RSS {peak_mb:,.0f} MB"
        )


if __name__ == "__main__":
    main()

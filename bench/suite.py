"""The benchmark suite (not a test): one generated orders dataset, every tool side by side.

    make bench                                            # 2,000,000 rows, 3 repetitions
    BENCH_ROWS=100000 BENCH_REPEAT=1 BENCH_CDC_CHANGES=50000 python -m bench.suite
    BENCH_ROWS=10000000 BENCH_SCENARIOS=full_refresh,incremental BENCH_TOOLS=psql,pgflow make bench

Two throwaway local clusters (the source, and the sink: a CDC slot decodes all of its
cluster's WAL, so the sink must be another cluster), one orders table of BENCH_ROWS rows in
the source, then the scenarios of BENCH_SCENARIOS (default all, in this order), each tool
BENCH_REPEAT times (default 3; the order of the tools rotates), medians (BENCH_TOOLS:
a subset of psql,pgflow,dlt,sling):

- full_refresh: the psql binary COPY pipe (the physical limit), pgflow full_refresh
  truncate_insert and exchange, the pgflow CLI (the whole `dagster asset materialize` process
  of a full_refresh spec with the default method), dlt replace (sql_table, pyarrow backend), Sling full-refresh;
- incremental: 1% of the rows change, then pgflow in-process (ColumnCursorSource, merge
  policies upsert and delete_insert), the pgflow CLI (the whole `dagster asset materialize`
  process, and its load time from the metadata), dlt merge, Sling incremental (primary key
  id, update key updated_at); each tool made its initial load first;
- cdc: pgflow's replicate() applying BENCH_CDC_CHANGES (default 1,000,000) changes, cdc.py's
  "mixed" scenario (40% inserts, 40% updates, 20% deletes), merge policy delete_insert;
- delta: Postgres -> Delta (load_delta full_refresh), Delta -> Postgres (sync_delta into a
  new target) and the unchanged Delta -> Postgres re-run;
- cdc_group: after the others, bench/cdc_group.py on clusters of its own (many tables on one
  slot vs a slot each, a group's throughput, a live add; bench/results-group.json).

pgflow's in-process figures come from a worker subprocess (`--job`), which times the call and
reports its VmHWM; every other tool is timed as a whole process. Peak RSS of every figure is
the summed RSS of the client process tree, polled from /proc (see common.run_tree). Every
target is checked against its source before its figure counts (common.checksum); a mismatch
marks the figure INVALID. Results: bench/results.json, bench/chart.png, and the generated
section of bench/README.md (bench_report.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import bench_report
from bench.common import create_orders, throwaway_cluster
from bench.peers import DLT_REQUIREMENTS, SLING_REQUIREMENTS
from bench.runs import (
    ALL_SCENARIOS,
    CDC_CHANGES,
    GROUP_SCENARIO,
    REPEAT,
    ROWS,
    RUN_GROUP,
    SCENARIOS,
    SERVER_SETTINGS,
    SOURCE,
    TOOLS,
    Bench,
)
from bench.scenarios import cdc_scenario, delta, full_refresh, incremental
from pgflow.config.model import StrategySpec, TableName

# -- the worker process: one pgflow call (runs.job starts it: `suite.py --job`) ------------------


def run_job(settings: dict[str, Any]) -> dict[str, Any]:
    """The worker's side of `job`: the call, timed, and this process's peak RSS."""
    from bench.common import peak_rss_mb, reset_peak_rss

    reset_peak_rss()
    started = time.perf_counter()
    figures = JOBS[settings["kind"]](settings)
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_rss_mb(), **figures}


def full_refresh_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.postgres_load import load_table
    from pgflow.sinks.postgres.parallel_exchange import Streams
    from pgflow.sources.postgres import PostgresTableSource

    parallelism = s.get("parallelism", 1)
    strategy = StrategySpec(mode="full_refresh", method=s["method"], parallelism=parallelism)
    streams = Streams(
        parallelism,
        connect_source=partial(psycopg.connect, s["source"]),
        connect_sink=partial(psycopg.connect, s["sink"], autocommit=True),
    )
    with psycopg.connect(s["source"]) as src, psycopg.connect(s["sink"], autocommit=True) as dst:
        source = PostgresTableSource(src, TableName("public", s["table"]))
        result = load_table(dst, source, TableName(*s["target"]), strategy, streams=streams)
    if parallelism > 1 and result.one_stream_reason:  # not the figure the tool's name promises
        raise RuntimeError(f"the parallel exchange ran as one stream: {result.one_stream_reason}")
    note = f"{result.streams} streams" if parallelism > 1 else ""
    return {"rows": result.rows, "own": result.seconds, "note": note}


def incremental_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.postgres_load import load_table
    from pgflow.sources.column_cursor import ColumnCursorSource

    strategy = StrategySpec(
        mode="incremental_merge", unique_key=("id",), merge_policy=s["merge_policy"]
    )
    with psycopg.connect(s["source"]) as src, psycopg.connect(s["sink"], autocommit=True) as dst:
        source = ColumnCursorSource(src, TableName("public", s["table"]), column="updated_at")
        result = load_table(dst, source, TableName(*s["target"]), strategy, pipeline="bench")
    return {"rows": result.rows, "own": result.seconds}


def to_delta_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.delta_load import load_delta
    from pgflow.sources.postgres import PostgresTableSource

    with psycopg.connect(s["source"]) as conn:
        source = PostgresTableSource(conn, TableName("public", s["table"]))
        result = load_delta(source, s["path"], StrategySpec(mode="full_refresh"), pipeline="bench")
    return {"rows": result.rows_read, "own": result.seconds}


def from_delta_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.delta_sync.run import sync_delta

    result = sync_delta(
        s["sink"], s["path"], TableName(*s["target"]), ("id",), pipeline=s["pipeline"]
    )
    return {"rows": result.rows_read, "own": None, "skipped": result.skipped}


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "full_refresh": full_refresh_job,
    "incremental": incremental_job,
    "to_delta": to_delta_job,
    "from_delta": from_delta_job,
}


# -- the run --------------------------------------------------------------------------------------


def machine(source_uri: str) -> dict[str, Any]:
    with psycopg.connect(source_uri) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    model = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
    return {
        "cpus": os.cpu_count(),
        "cpu": model[0].split(":", 1)[1].strip() if model else platform.processor(),
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": row[0] if row else "?",
    }


def shown_settings(uri: str) -> dict[str, str]:
    """The server's own value of each BENCH_ setting (proof the restart took it)."""
    with psycopg.connect(uri) as conn:
        return {
            name: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0])  # type: ignore[index]
            for name in SERVER_SETTINGS
        }


def source_figures(source_uri: str) -> tuple[int, str]:
    """Bytes of the source table (heap + TOAST, no indexes) and their pretty form."""
    with psycopg.connect(source_uri) as conn:
        row = conn.execute(
            f"SELECT pg_table_size('{SOURCE}'), pg_size_pretty(pg_table_size('{SOURCE}'))"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def main() -> None:
    unknown = set(SCENARIOS) - set(ALL_SCENARIOS)
    if unknown:
        known = (*ALL_SCENARIOS, GROUP_SCENARIO)
        raise SystemExit(f"BENCH_SCENARIOS: unknown {sorted(unknown)}; known {known}")
    if SCENARIOS:
        suite()
    if RUN_GROUP:
        from bench import cdc_group

        cdc_group.main()


def suite() -> None:
    """The scenarios side by side on one dataset (all but cdc_group)."""
    started = time.time()
    with (
        throwaway_cluster(["bench_source"], SERVER_SETTINGS) as source_info,
        throwaway_cluster(["bench_sink", "bench_dagster"], SERVER_SETTINGS) as sink_info,
        tempfile.TemporaryDirectory(prefix="pgflow-bench-") as tmp,
    ):
        source_uri, sink_uri = source_info.uri("bench_source"), sink_info.uri("bench_sink")
        made = time.perf_counter()
        create_orders(source_uri, ROWS, SOURCE)
        table_bytes, pretty = source_figures(source_uri)
        print(
            f"source: {ROWS:,} orders, {pretty} (pg_table_size), made in"
            f" {time.perf_counter() - made:.0f} s; scenarios {', '.join(SCENARIOS)};"
            f" {REPEAT} repetition(s)",
            flush=True,
        )
        bench = Bench(source_uri, sink_uri, Path(tmp), table_bytes / ROWS)
        steps: dict[str, Callable[[], None]] = {
            "full_refresh": lambda: full_refresh(bench, sink_info),
            "incremental": lambda: incremental(bench, sink_info),
            "cdc": lambda: cdc_scenario(bench),
            "delta": lambda: delta(bench),
        }
        for name in SCENARIOS:
            steps[name]()
        results = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(time.time() - started),
            "machine": machine(source_uri),
            "rows": ROWS,
            "server_settings": shown_settings(sink_uri),
            "repeat": REPEAT,
            "cdc_changes": CDC_CHANGES,
            "scenarios": list(SCENARIOS),
            "tools": list(TOOLS),
            "peers": {"dlt": list(DLT_REQUIREMENTS), "sling": list(SLING_REQUIREMENTS)},
            "source_table_bytes": table_bytes,
            "row_bytes": bench.row_bytes,
            "runs": [dataclasses.asdict(r) for r in bench.runs],
            "failures": bench.failures,
        }
    bench_report.publish(results)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--job"]:
        print(json.dumps(run_job(json.loads(sys.argv[2]))))
    else:
        main()

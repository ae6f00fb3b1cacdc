"""Profiles (not tests): where an incremental merge's time and a Delta load's memory go.

    python -m bench.profiles merge [ROWS]    # default 2,000,000
    python -m bench.profiles fillfactor [ROWS]
    python -m bench.profiles sling [ROWS]    # after `make bench` built Sling's venv
    python -m bench.profiles cold [ROWS]
    python -m bench.profiles memory [ROWS]

merge: an in-process upsert load after 1% of ROWS changed, three times, with every statement
the two servers ran and its duration (`log_min_duration_statement = 0`; those of 5 ms or more
are printed); then the same changed rows applied by other statements, each rolled back.

fillfactor: two upsert targets of the same rows, one created with pgflow's fillfactor for
upserted targets and one packed (100), loaded in turn after each 1% change: time, WAL written
and how many updates were HOT (stayed on their page).

sling: pgflow's in-process upsert and Sling's incremental run into one sink cluster that holds
only their two targets, in turn after each 1% change, with every statement of 5 ms or more
that the sink ran for each.

cold: the upsert's apply statement (the 1% of changed rows already staged), rolled back, with
the target's pages in different places: "dropped", the sink restarted (shared_buffers empty)
and the kernel's page cache dropped (root only): every page from disk; "warm", right after,
in shared_buffers; "kept", the sink restarted: in the kernel's page cache only; "aged", the
sink restarted and AGED_S seconds of waiting: in whatever the kernel kept of its page cache.

memory: Postgres -> Delta (full_refresh) and Delta -> Postgres (sync), each in a process of
its own: its peak RSS and its anonymous and file-backed memory sampled every second.

bench/README.md ("What the profiles found") quotes their figures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench.common import (
    change_rows,
    checkpoint,
    create_orders,
    throwaway_cluster,
    throwaway_server,
    vacuum_analyze,
)
from pgflow.config.model import StrategySpec, TableName
from pgflow.localdb.cluster import LocalPostgres

ORDERS = TableName("public", "orders")
SLOW_MS = 5.0
AGED_S = 45  # cold: how long the "aged" state waits after the restart
COLUMNS = "id, customer_id, status, amount, note, tags, attrs, created_at, updated_at, paid, ref"


# -- merge ----------------------------------------------------------------------------------------


def upsert_load(
    source_uri: str, sink_uri: str, target: TableName = ORDERS, fillfactor: int | None = None
) -> tuple[int, float]:
    from pgflow.flows.postgres_load import load_table
    from pgflow.sources.column_cursor import ColumnCursorSource

    strategy = StrategySpec(
        mode="incremental_merge", unique_key=("id",), merge_policy="upsert", fillfactor=fillfactor
    )
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        started = time.perf_counter()
        source = ColumnCursorSource(src, ORDERS, column="updated_at")
        result = load_table(dst, source, target, strategy, pipeline=target.name)
        return result.rows, time.perf_counter() - started


def log_statements(uri: str, on: bool) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET log_min_duration_statement = {0 if on else -1}")
        conn.execute("SELECT pg_reload_conf()")


def slow_statements(server: LocalPostgres, since: int) -> list[str]:
    """The logged statements of SLOW_MS or more since byte `since` of the server's log, each
    on one line (a statement's first 140 characters, its line breaks as spaces)."""
    with server.log_file.open(errors="replace") as log:
        log.seek(since)
        entries = log.read().split("LOG:  duration: ")[1:]
    # An entry runs to the next log line's prefix (its timestamp).
    statements = [" ".join(re.split(r"\n\d{4}-\d\d-\d\d ", e)[0].split()) for e in entries]
    return [s[:140] for s in statements if float(s.split(" ms", 1)[0]) >= SLOW_MS]


APPLY_WAYS = {
    "upsert": "INSERT INTO orders AS t ({c}) SELECT {c} FROM st ON CONFLICT (id) DO UPDATE SET {x}"
    " WHERE ROW({t})::record *<> ROW({e})::record",
    "upsert, ordered by key": "INSERT INTO orders AS t ({c}) SELECT {c} FROM st ORDER BY id"
    " ON CONFLICT (id) DO UPDATE SET {x} WHERE ROW({t})::record *<> ROW({e})::record",
    "MERGE": "MERGE INTO orders t USING st s ON t.id = s.id WHEN MATCHED THEN UPDATE SET {m}"
    " WHEN NOT MATCHED THEN INSERT ({c}) VALUES ({s})",
    "DELETE + INSERT": "DELETE FROM orders t USING st s WHERE t.id = s.id;"
    " INSERT INTO orders ({c}) SELECT {c} FROM st",
    # What an SSD-backed sink's usual setting changes: index probes instead of a hash join.
    "DELETE + INSERT, random_page_cost 1.1": "SET LOCAL random_page_cost = 1.1;"
    " DELETE FROM orders t USING st s WHERE t.id = s.id;"
    " INSERT INTO orders ({c}) SELECT {c} FROM st",
    "UPDATE FROM + INSERT WHERE NOT EXISTS": "UPDATE orders t SET {m} FROM st s WHERE t.id = s.id;"
    " INSERT INTO orders ({c}) SELECT {c} FROM st s"
    " WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = s.id)",
}


def apply_way(template: str) -> list[str]:
    names = COLUMNS.split(", ")
    statement = template.format(
        c=COLUMNS,
        x=", ".join(f"{n} = excluded.{n}" for n in names),
        t=", ".join(f"t.{n}" for n in names),
        e=", ".join(f"excluded.{n}" for n in names),
        m=", ".join(f"{n} = s.{n}" for n in names[1:]),
        s=", ".join(f"s.{n}" for n in names),
    )
    return statement.split("; ")


def stage_changed_rows(sink_uri: str) -> None:
    """`st`: 1% of the target's rows (every 100th key) with changed values, as a load stages them."""
    with psycopg.connect(sink_uri, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE st AS SELECT * FROM orders WHERE id % 100 = 7")
        conn.execute("UPDATE st SET amount = amount + 1, status = 'x', updated_at = now()")
        conn.execute("VACUUM ANALYZE st")


def timed_rolled_back(uri: str, statements: list[str]) -> float:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("SELECT 1")  # the connection's own start-up is not timed
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            for statement in statements:
                conn.execute(statement)
            return time.perf_counter() - started


def compare_apply_ways(sink_uri: str) -> None:
    print("\nthe same changed rows applied other ways (each rolled back after a CHECKPOINT):")
    stage_changed_rows(sink_uri)
    for name, template in APPLY_WAYS.items():
        times = []
        for _ in range(2):
            checkpoint(sink_uri)
            times.append(timed_rolled_back(sink_uri, apply_way(template)) * 1000)
        print(f"  {name:40s} " + ", ".join(f"{t:,.0f} ms" for t in times), flush=True)


def merge(rows: int) -> None:
    with (
        throwaway_server(["db"]) as (source, source_info),
        throwaway_server(["db"]) as (sink, sink_info),
    ):
        source_uri, sink_uri = source_info.uri("db"), sink_info.uri("db")
        create_orders(source_uri, rows)
        loaded, seconds = upsert_load(source_uri, sink_uri)
        print(f"initial load: {loaded:,} rows in {seconds:.1f} s", flush=True)
        for repetition in range(3):
            changed = change_rows(source_uri, repetition)
            with psycopg.connect(source_uri, autocommit=True) as conn:
                conn.execute("VACUUM orders")  # as autovacuum would, between two loads
            checkpoint(source_uri, sink_uri)
            marks = [server.log_file.stat().st_size for server in (source, sink)]
            for uri in (source_uri, sink_uri):
                log_statements(uri, True)
            loaded, seconds = upsert_load(source_uri, sink_uri)
            for uri in (source_uri, sink_uri):
                log_statements(uri, False)
            print(f"\n{changed:,} rows changed; the load applied {loaded:,} in {seconds:.3f} s")
            for side, server, mark in (("source", source, marks[0]), ("sink", sink, marks[1])):
                for line in slow_statements(server, mark):
                    print(f"  {side:6s} {line}")
        compare_apply_ways(sink_uri)


# -- fillfactor -----------------------------------------------------------------------------------


def fillfactor(rows: int) -> None:
    from pgflow.sinks.postgres.ddl import UPSERT_FILLFACTOR

    targets = {
        UPSERT_FILLFACTOR: TableName("public", "roomy"),
        100: TableName("public", "packed"),
    }
    with throwaway_cluster(["db"]) as source_info, throwaway_cluster(["db"]) as sink_info:
        source_uri, sink_uri = source_info.uri("db"), sink_info.uri("db")
        create_orders(source_uri, rows)
        for factor, target in targets.items():
            upsert_load(source_uri, sink_uri, target, factor)
        vacuum_analyze(sink_uri, [str(t) for t in targets.values()])
        for repetition in range(4):
            change_rows(source_uri, repetition)
            with psycopg.connect(source_uri, autocommit=True) as conn:
                conn.execute("VACUUM orders")
            for factor in sorted(targets, reverse=repetition % 2 == 1):  # alternate who is first
                checkpoint(source_uri, sink_uri)
                before = wal_position(sink_uri)
                loaded, seconds = upsert_load(source_uri, sink_uri, targets[factor], factor)
                wal_mb = (wal_position(sink_uri) - before) / 1e6
                print(
                    f"load {repetition + 1}, fillfactor {factor:3d}: {loaded:,} rows in "
                    f"{seconds:.3f} s, {wal_mb:,.0f} MB of WAL",
                    flush=True,
                )
        time.sleep(1.5)  # the servers publish their statistics about once a second
        with psycopg.connect(sink_uri, autocommit=True) as conn:
            for name, updated, hot in conn.execute(
                "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relname IN ('roomy', 'packed') ORDER BY relname DESC"
            ):
                print(f"{name}: {hot:,} of {updated:,} updates were HOT")


def wal_position(uri: str) -> int:
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        assert row is not None
        return int(row[0])


# -- sling ----------------------------------------------------------------------------------------


def sling(rows: int) -> None:
    from bench.peers import Sling

    with (
        throwaway_cluster(["db"]) as source_info,
        throwaway_server(["db"]) as (sink, sink_info),
        tempfile.TemporaryDirectory() as work,
    ):
        source_uri, sink_uri = source_info.uri("db"), sink_info.uri("db")
        create_orders(source_uri, rows)
        peer = Sling(source_uri, sink_uri, "orders", "sling.orders", "incremental", Path(work))
        peer.run()
        upsert_load(source_uri, sink_uri)
        vacuum_analyze(sink_uri, ["sling.orders", "public.orders"])
        for repetition in range(3):
            change_rows(source_uri, repetition)
            for tool in ("Sling", "pgflow"):
                checkpoint(source_uri, sink_uri)
                mark = sink.log_file.stat().st_size
                log_statements(sink_uri, True)
                started = time.perf_counter()
                if tool == "Sling":
                    peer.run()
                else:
                    upsert_load(source_uri, sink_uri)
                seconds = time.perf_counter() - started
                log_statements(sink_uri, False)
                print(f"\nload {repetition + 1}, {tool}: {seconds:.3f} s", flush=True)
                for line in slow_statements(sink, mark):
                    print(f"  sink {line}")


# -- cold -----------------------------------------------------------------------------------------


def drop_page_cache() -> bool:
    """Have the kernel drop its clean page cache (root only); whether it did."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def cold(rows: int) -> None:
    upsert = apply_way(APPLY_WAYS["upsert"])
    with (
        throwaway_cluster(["db"]) as source_info,
        throwaway_server(["db"]) as (sink, sink_info),
    ):
        source_uri, sink_uri = source_info.uri("db"), sink_info.uri("db")
        create_orders(source_uri, rows)
        upsert_load(source_uri, sink_uri)
        stage_changed_rows(sink_uri)

        def restarted(page_cache: str) -> str:
            sink.stop()
            uri = sink.start().uri("db")
            if page_cache == "dropped" and not drop_page_cache():
                print("  (not root: the page cache could not be dropped)")
            elif page_cache == "aged":
                time.sleep(AGED_S)
            return uri

        for repetition in range(3):
            figures = []
            for state in ("dropped", "warm", "kept", "aged"):
                if state == "warm":
                    checkpoint(sink_uri)
                else:
                    sink_uri = restarted(state)
                figures.append(f"{state} {timed_rolled_back(sink_uri, upsert) * 1000:,.0f} ms")
            print(f"{repetition + 1}: " + ", ".join(figures), flush=True)


# -- memory ---------------------------------------------------------------------------------------


def memory_job(settings: dict[str, str]) -> dict[str, object]:
    """In the child: one load, with its memory sampled every second."""
    from bench.common import peak_rss_mb, reset_peak_rss

    samples: list[tuple[int, int]] = []

    def sample() -> None:
        while True:
            lines = Path("/proc/self/status").read_text().splitlines()
            fields = dict(line.split(":", 1) for line in lines)
            samples.append((int(fields["RssAnon"].split()[0]), int(fields["RssFile"].split()[0])))
            time.sleep(1.0)

    threading.Thread(target=sample, daemon=True).start()
    reset_peak_rss()
    started = time.perf_counter()
    if settings["kind"] == "to_delta":
        from pgflow.flows.delta_load import load_delta
        from pgflow.sources.postgres import PostgresTableSource

        with psycopg.connect(settings["source"]) as conn:
            strategy = StrategySpec(mode="full_refresh")
            load_delta(PostgresTableSource(conn, ORDERS), settings["path"], strategy, pipeline="p")
    else:
        from pgflow.flows.delta_sync.run import sync_delta

        sync_delta(settings["sink"], settings["path"], ORDERS, ["id"], pipeline="p")
    anon = [a // 1024 for a, _ in (samples[1:] or samples)]  # a short load: its one sample
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_mb": round(peak_rss_mb() or 0),
        "anon_mb": f"{min(anon)}-{max(anon)}",
        "file_mb": samples[-1][1] // 1024,
    }


def memory(rows: int) -> None:
    with throwaway_server(["source", "sink"]) as (_, info), tempfile.TemporaryDirectory() as lake:
        source_uri = info.uri("source")
        create_orders(source_uri, rows)
        path = str(Path(lake) / "orders")
        for kind in ("to_delta", "from_delta"):
            settings = {"kind": kind, "source": source_uri, "sink": info.uri("sink"), "path": path}
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.profiles",
                    "--job",
                    json.dumps(settings),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            print(f"{kind:10s} {rows:,} rows: {done.stdout.strip().splitlines()[-1]}", flush=True)


def main() -> None:
    if sys.argv[1] == "--job":
        print(json.dumps(memory_job(json.loads(sys.argv[2]))))
        return
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    modes = {
        "merge": merge,
        "fillfactor": fillfactor,
        "sling": sling,
        "cold": cold,
        "memory": memory,
    }
    modes[sys.argv[1]](rows)


if __name__ == "__main__":
    main()

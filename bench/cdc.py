"""Benchmark (not a test): changes per second that pgflow's CDC applies end to end.

    make bench                                   # 1,000,000 changes per scenario
    BENCH_CDC_CHANGES=100000 python -m bench.cdc

Two throwaway local clusters (wal_level=logical): the source, and the sink. Separate, as in
production: a slot decodes all of its cluster's WAL, so a sink in the same cluster would put
its own writes in the stream the next run reads.

Scenarios, each on its own source table shaped like the incremental bench's orders (bigint id
primary key, int, text, numeric(12,2), text with NULLs, text[], jsonb, two timestamptz, bool,
uuid; default replica identity: updates and deletes carry the key), with N =
BENCH_CDC_CHANGES changes made in source transactions of TX_ROWS (10,000) rows each:
- insert: N/10 base rows, then N rows inserted (new ids, INSERT ... SELECT generate_series);
- update: N base rows, then every row updated once (status, amount, attrs, updated_at):
  transaction k updates the rows with id % (N / TX_ROWS) = k, so each transaction's rows are
  spread over the whole table, as an OLTP workload's are, and no key repeats within a batch;
- mixed: N base rows; each transaction inserts 40% new rows, updates 40% and deletes 20% of
  the base rows (again spread by id % (N / TX_ROWS); no row is both updated and deleted).
BENCH_CDC_SCENARIOS picks some (comma-separated), BENCH_CDC_BATCH sets batch_changes.

Per scenario, one pipeline per merge policy (BENCH_CDC_POLICIES, default delete_insert,upsert),
each with its own slot, publication and target. Every pipeline first runs replicate() once:
the initial snapshot, which creates its slot (not timed as CDC). Then the changes are made on
the source, once, for all pipelines. Then each pipeline's ONE measured replicate() call applies
them all (it loops over batches of CdcSettings.batch_changes, default 100,000, itself); the
pipelines run one after the other, in the order of BENCH_CDC_POLICIES. The call runs in a
subprocess of its own, so its peak RSS (VmHWM, reset just before the call) is the call's
alone; the subprocess also reports where the time went (see `breakdown`).

Before a figure counts, the target must equal the source: the same count(*) and the same
order-independent checksum sum(hashtext(ROW(every column)::text)), read with the same
session settings on both sides.

Reported per pipeline: changes applied, source transactions, batches, wall seconds of the
call, changes/s, MB of WAL the slot went over (pg_wal_lsn_diff of the stored positions before
and after), peak RSS, the client's CPU seconds, and the breakdown. The issue's target is
TARGET_CHANGES_PER_S (50,000) changes/s.

The breakdown wraps pgflow's functions in the subprocess (about 1 us per change);
BENCH_CDC_BREAKDOWN=0 measures without it. BENCH_CDC_PROFILE=1 runs each measured call under
cProfile (about twice as slow: the figures are marked profiled) and prints its top functions.

Both clusters run with LocalPostgres's settings (shared_buffers 128 MB, the default), smaller
than a 1,000,000-row target with its index: a sink with more memory applies faster.

Here: the scenarios, the run and the report. The measured call and its breakdown are in
bench/cdc_measure.py; the pipelines' snapshot, checksum, WAL and slots in bench/cdc_pipelines.py.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.cdc_measure import APPLY_PARTS, PARTS, breakdown, measured_call
from bench.cdc_pipelines import Pipeline, Scenario, checksum, drop_slots, snapshot, wal_mb
from bench.common import ORDERS_DDL, ORDERS_FILL, throwaway_cluster
from bench.server_cpu import postmaster_pid
from pgflow.config.model import TableName

CHANGES = int(os.environ.get("BENCH_CDC_CHANGES", "1000000"))
POLICIES = tuple(os.environ.get("BENCH_CDC_POLICIES", "delete_insert,upsert").split(","))
SCENARIOS = tuple(os.environ.get("BENCH_CDC_SCENARIOS", "insert,update,mixed").split(","))
BATCH_CHANGES = int(os.environ.get("BENCH_CDC_BATCH", "0")) or None  # None: CdcSettings' default
PROFILE = os.environ.get("BENCH_CDC_PROFILE", "") not in ("", "0")
BREAKDOWN = os.environ.get("BENCH_CDC_BREAKDOWN", "1") not in ("", "0")
TX_ROWS = 10_000
TARGET_CHANGES_PER_S = 50_000
SUBPROCESS_TIMEOUT_S = 3600

UPDATE = """
UPDATE {table} SET status = 'changed', amount = amount + 1, updated_at = clock_timestamp(),
       attrs = attrs || jsonb_build_object('rev', %(k)s)
WHERE id %% %(groups)s = %(k)s {extra}
"""
DELETE = """
DELETE FROM {table}
WHERE id %% %(groups)s = %(k)s AND (id / %(groups)s) %% 5 = 2 AND id <= %(base)s
"""


def groups() -> int:
    return max(1, math.ceil(CHANGES / TX_ROWS))


def insert_changes(conn: psycopg.Connection, table: str) -> int:
    base = CHANGES // 10
    made = 0
    for lo in range(base + 1, base + CHANGES + 1, TX_ROWS):
        hi = min(lo + TX_ROWS - 1, base + CHANGES)
        with conn.transaction():
            made += conn.execute(ORDERS_FILL.format(table=table), {"lo": lo, "hi": hi}).rowcount
    return made


def update_changes(conn: psycopg.Connection, table: str) -> int:
    made = 0
    for k in range(groups()):
        with conn.transaction():
            made += conn.execute(
                UPDATE.format(table=table, extra=""), {"k": k, "groups": groups()}
            ).rowcount
    return made


def mixed_changes(conn: psycopg.Connection, table: str) -> int:
    """Per transaction: 40% inserts, 40% updates, 20% deletes (of TX_ROWS)."""
    made = 0
    next_id = CHANGES + 1
    inserted = TX_ROWS * 4 // 10
    for k in range(groups()):
        params = {"k": k, "groups": groups(), "base": CHANGES}
        with conn.transaction():
            made += conn.execute(
                UPDATE.format(
                    table=table, extra="AND (id / %(groups)s) %% 5 < 2 AND id <= %(base)s"
                ),
                params,
            ).rowcount
            made += conn.execute(DELETE.format(table=table), params).rowcount
            made += conn.execute(
                ORDERS_FILL.format(table=table), {"lo": next_id, "hi": next_id + inserted - 1}
            ).rowcount
        next_id += inserted
    return made


def scenarios() -> list[Scenario]:
    return scenarios_named(SCENARIOS)


def scenarios_named(names: tuple[str, ...]) -> list[Scenario]:
    """The scenarios `names`, sized by CHANGES (read when called)."""
    every = {
        "insert": Scenario(
            "insert",
            CHANGES // 10,
            insert_changes,
            f"{CHANGES // 10:,} base rows, {CHANGES:,} inserted",
        ),
        "update": Scenario(
            "update",
            CHANGES,
            update_changes,
            f"{CHANGES:,} base rows, each updated once",
        ),
        "mixed": Scenario(
            "mixed",
            CHANGES,
            mixed_changes,
            f"{CHANGES:,} base rows; per transaction 40% inserts, 40% updates, 20% deletes",
        ),
    }
    return [every[name] for name in names]


# -- the bench ------------------------------------------------------------------------------------


def measure(pipeline: Pipeline, source_uri: str, sink_uri: str) -> dict[str, Any]:
    settings = {
        "source": source_uri,
        "sink": sink_uri,
        "table": [pipeline.source_table.schema, pipeline.source_table.name],
        "target": [pipeline.target.schema, pipeline.target.name],
        "slot": pipeline.slot,
        "policy": pipeline.policy,
        "batch": BATCH_CHANGES,
        "profile": PROFILE,
        "breakdown": BREAKDOWN,
        "postmasters": {"source": postmaster_pid(source_uri), "sink": postmaster_pid(sink_uri)},
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.cdc", "--measure", json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"the measured call of {pipeline.name} failed:\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_scenario(scenario: Scenario, source_uri: str, sink_uri: str) -> list[Pipeline]:
    table = TableName("public", f"orders_{scenario.name}")
    with psycopg.connect(source_uri, autocommit=True) as conn:
        conn.execute(ORDERS_DDL.format(table=table.name))
        conn.execute(ORDERS_FILL.format(table=table.name), {"lo": 1, "hi": scenario.base_rows})
        conn.execute(f"VACUUM ANALYZE {table.name}")
    pipelines = [
        Pipeline(
            scenario,
            policy,
            table,
            TableName(f"cdc_{policy}", table.name),
            f"bench_{scenario.name}_{policy}",
        )
        for policy in POLICIES
    ]
    print(f"\n{scenario.name}: {scenario.describe}", flush=True)
    for p in pipelines:
        snapshot(p, source_uri, sink_uri)
        print(f"  {p.name:<24} snapshot of {scenario.base_rows:,} rows {p.snapshot_s:7.1f} s")
    started = time.perf_counter()
    with psycopg.connect(source_uri) as conn:
        made = scenario.make_changes(conn, table.name)
    print(
        f"  {made:,} changes made on the source in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    expected = checksum(source_uri, table)
    for p in pipelines:
        p.figures = measure(p, source_uri, sink_uri)
        got = checksum(sink_uri, p.target)
        p.valid = got == expected
        f = p.figures
        print(
            f"  {p.name:<24} {f['changes']:>10,} changes in {f['wall']:7.2f} s"
            f"  {f['changes'] / f['wall']:>9,.0f} changes/s"
            f"{'' if p.valid else f'  INVALID: target {got} != source {expected}'}",
            flush=True,
        )
        if not p.valid:
            print(f"  !!!!!!!! {p.name}: the target DIFFERS from the source !!!!!!!!")
        if f["profile"]:
            print(f"  cProfile of {p.name} (by own time):\n{f['profile']}")
        p.figures["wal_mb"] = wal_mb(source_uri, f["lsn"])
    drop_slots(source_uri, pipelines)
    return pipelines


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(pipelines: list[Pipeline]) -> None:
    batch = BATCH_CHANGES or "default"
    print(
        f"\nCDC: one replicate() call applying {CHANGES:,} changes (source transactions of"
        f" {TX_ROWS:,} rows, batch_changes {batch}){' [PROFILED]' if PROFILE else ''}:"
    )
    print(
        f"  {'scenario / policy':<24} {'changes':>9} {'txns':>5} {'batches':>7} {'wall s':>7}"
        f" {'changes/s':>9} {'WAL MB':>7} {'RSS MB':>6} {'peak MB':>7} {'CPU s':>6}"
        f" {'src CPU':>7} {'sink CPU':>8}  check"
    )
    for p in pipelines:
        f = p.figures
        if f is None:
            continue
        print(
            f"  {p.name:<24} {f['changes']:>9,} {f['transactions']:>5,} {f['batches']:>7}"
            f" {f['wall']:>7.2f} {f['changes'] / f['wall']:>9,.0f} {fmt(f['wal_mb'], '7.0f')}"
            f" {f['rss_before_mb']:>6.0f} {fmt(f['peak_rss_mb'], '7.0f')} {f['cpu_s']:>6.1f}"
            f" {f['source_cpu_s']:>7.1f} {f['sink_cpu_s']:>8.1f}"
            f"  {'ok' if p.valid else 'INVALID'}"
        )
    print(
        "  RSS MB: the subprocess before the call (interpreter, pgflow, psycopg); peak MB: its"
        " VmHWM during the call.\n  CPU s: the client's CPU time (user + system) during the"
        " call; src / sink CPU: the source and sink clusters' CPU seconds (bench/server_cpu.py);\n"
        "  WAL MB: the source WAL between the positions before and after."
    )
    if BREAKDOWN:
        report_breakdown(pipelines)
    measured = [p for p in pipelines if p.figures and p.valid]
    if measured:
        slowest = min(measured, key=lambda p: p.figures["changes"] / p.figures["wall"])  # type: ignore[index]
        rate = slowest.figures["changes"] / slowest.figures["wall"]  # type: ignore[index]
        verdict = "MET" if rate >= TARGET_CHANGES_PER_S else "NOT MET"
        print(
            f"\ntarget {TARGET_CHANGES_PER_S:,} changes/s: {verdict} (slowest pipeline:"
            f" {slowest.name}, {rate:,.0f} changes/s)"
        )


def report_breakdown(pipelines: list[Pipeline]) -> None:
    names = PARTS + APPLY_PARTS
    print("\nwhere the time went, seconds (share of the call; apply runs beside the others):")
    print(f"  {'scenario / policy':<24} " + " ".join(f"{n:>13}" for n in names))
    for p in pipelines:
        if p.figures is None or p.figures["parts"] is None:
            continue
        parts, wall = p.figures["parts"], p.figures["wall"]
        cells = " ".join(f"{parts[n]:>7.2f} ({parts[n] / wall:>3.0%})" for n in names)
        print(f"  {p.name:<24} {cells}")
    legend = inspect.cleandoc(breakdown.__doc__ or "").split("\n", 3)[3]
    print(textwrap.indent(legend, "  "))
    print("\nthe slowest SQL statements on the sink, seconds over all batches:")
    for p in pipelines:
        if p.figures is None:
            continue
        print(f"  {p.name}:")
        ranked = sorted(p.figures["statements"].items(), key=lambda kv: -kv[1])
        for text, seconds in ranked[:5]:
            print(f"    {seconds:7.2f}  {text}")


def main() -> None:
    pipelines: list[Pipeline] = []
    with (
        throwaway_cluster(["bench_source"]) as source_info,
        throwaway_cluster(["bench_sink"]) as sink_info,
    ):
        source_uri, sink_uri = source_info.uri("bench_source"), sink_info.uri("bench_sink")
        for scenario in scenarios():
            pipelines += run_scenario(scenario, source_uri, sink_uri)
        report(pipelines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measured_call(json.loads(sys.argv[2]))))
    else:
        main()

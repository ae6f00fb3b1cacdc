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
"""

from __future__ import annotations

import cProfile
import inspect
import io
import json
import math
import os
import pstats
import resource
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import pgflow.flows.cdc.applier as cdc_applier
import pgflow.flows.cdc.segment as cdc_segment
import pgflow.flows.cdc.stream as cdc_stream
import pgflow.sources.cdc as source_cdc
from bench.common import ORDERS_DDL, ORDERS_FILL, throwaway_cluster
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcSettings, CdcTarget
from pgflow.flows.cdc.run import replicate
from pgflow.sinks.postgres.sql_log import SqlLog

CHANGES = int(os.environ.get("BENCH_CDC_CHANGES", "1000000"))
POLICIES = tuple(os.environ.get("BENCH_CDC_POLICIES", "delete_insert,upsert").split(","))
SCENARIOS = tuple(os.environ.get("BENCH_CDC_SCENARIOS", "insert,update,mixed").split(","))
BATCH_CHANGES = int(os.environ.get("BENCH_CDC_BATCH", "0")) or None  # None: CdcSettings' default
PROFILE = os.environ.get("BENCH_CDC_PROFILE", "") not in ("", "0")
BREAKDOWN = os.environ.get("BENCH_CDC_BREAKDOWN", "1") not in ("", "0")
TX_ROWS = 10_000
TARGET_CHANGES_PER_S = 50_000
SUBPROCESS_TIMEOUT_S = 3600

COLUMNS = "id, customer_id, status, amount, note, tags, attrs, created_at, updated_at, paid, ref"
UPDATE = """
UPDATE {table} SET status = 'changed', amount = amount + 1, updated_at = clock_timestamp(),
       attrs = attrs || jsonb_build_object('rev', %(k)s)
WHERE id %% %(groups)s = %(k)s {extra}
"""
DELETE = """
DELETE FROM {table}
WHERE id %% %(groups)s = %(k)s AND (id / %(groups)s) %% 5 = 2 AND id <= %(base)s
"""
CHECKSUM = (
    f"SELECT count(*), coalesce(sum(hashtext(ROW({COLUMNS})::text)::bigint), 0) FROM {{table}}"
)
# The same text of every value on both sides.
CHECK_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=1"


@dataclass(frozen=True)
class Scenario:
    name: str
    base_rows: int
    make_changes: Callable[[psycopg.Connection, str], int]  # changes made on the source
    describe: str


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


# -- the measured call, in a subprocess of its own ------------------------------------------------


@dataclass
class Timers:
    """Seconds spent in each part of one replicate() call, measured by wrapping pgflow's own
    functions (the subprocess only: pgflow is not changed)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    statements: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    in_flush: bool = False

    def timed_iterator(
        self, name: str, items: Iterator[Any], first: str | None = None
    ) -> Iterator[Any]:
        """`items`, adding the time spent getting them to `name` (the first one's, also to
        `first`)."""
        clock = time.perf_counter
        total = 0.0
        try:
            started = clock()
            for item in items:
                spent = clock() - started
                if first is not None:
                    self.seconds[first] += spent
                    first = None
                total += spent
                yield item
                started = clock()
            total += clock() - started
        finally:
            self.seconds[name] += total

    def timed_call(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return call


def statement_label(text: str) -> str:
    """A statement's text with table names made generic, so batches add up per statement."""
    for prefix in ('"_pgflow_staging".', "_pgflow_staging."):
        while prefix in text:
            start = text.index(prefix)
            end = start + len(prefix)
            end = text.index('"', end + 1) + 1 if text[end] == '"' else end
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            text = text[:start] + "<staging>" + text[end:]
    return " ".join(text.split())[:110]


def instrument(timers: Timers) -> None:
    """Wrap the functions whose time the breakdown reports (see `breakdown`)."""
    peek, changes = source_cdc.peek_changes, cdc_stream.table_changes
    source_cdc.peek_changes = lambda *a, **k: timers.timed_iterator(
        "peek", peek(*a, **k), first="peek_first"
    )
    cdc_stream.table_changes = lambda *a, **k: timers.timed_iterator("events", changes(*a, **k))
    cdc_applier.apply_staged = timers.timed_call("apply_batch", cdc_applier.apply_staged)
    source_cdc.advance_slot = timers.timed_call("advance", source_cdc.advance_slot)
    segment = cdc_segment.Segment
    segment.upsert = timers.timed_call("rows", segment.upsert)  # type: ignore[method-assign]
    segment.remove = timers.timed_call("rows", segment.remove)  # type: ignore[method-assign]
    write = segment._write

    def timed_write(self: Any) -> None:
        started = time.perf_counter()
        write(self)
        timers.seconds["write_in_flush" if timers.in_flush else "write"] += (
            time.perf_counter() - started
        )

    segment._write = timed_write  # type: ignore[method-assign]
    flush = segment.flush

    def timed_flush(self: Any) -> None:
        timers.in_flush = True
        started = time.perf_counter()
        try:
            flush(self)
        finally:
            timers.seconds["flush"] += time.perf_counter() - started
            timers.in_flush = False

    segment.flush = timed_flush  # type: ignore[method-assign]
    execute = SqlLog.execute

    def timed_execute(self: SqlLog, query: Any, params: Any = None) -> psycopg.Cursor:
        started = time.perf_counter()
        try:
            return execute(self, query, params)
        finally:
            spent = time.perf_counter() - started
            text = query if isinstance(query, str) else query.as_string(self.conn)
            timers.statements[statement_label(text)] += spent
            timers.seconds["sql_in_flush" if timers.in_flush else "sql"] += spent

    SqlLog.execute = timed_execute  # type: ignore[method-assign]


def breakdown(total: float, s: dict[str, float]) -> dict[str, float]:
    """The call's wall time in parts that add up to it.

    slot: the server decoding the WAL in pg_logical_slot_peek_binary_changes (it fills a
      tuplestore before the cursor's first fetch returns: that fetch's time);
    fetch: the other fetches of the change cursor (network, psycopg), 2,000 rows each;
    decode: pgoutput decoding and change events, in Python (events minus peek);
    rows: a change into a COPY text line, in Python (_Segment.upsert/remove, minus COPY
      writes they trigger);
    copy: COPY data sent to the sink and the COPY's completion;
    apply: the set-based SQL on the sink after the COPY (keep last per key, deletes, merge);
    advance: pg_replication_slot_advance on the source (the server decodes the WAL again);
    other: the rest (catalog reads, staging set-up, position writes, commits, ...).
    """
    copy_end = s["flush"] - s["sql_in_flush"] - s["write_in_flush"]
    parts = {
        "slot": s["peek_first"],
        "fetch": s["peek"] - s["peek_first"],
        "decode": s["events"] - s["peek"],
        "rows": s["rows"] - s["write"],
        "copy": s["write"] + s["write_in_flush"] + copy_end,
        "apply": s["sql_in_flush"],
        "advance": s["advance"],
    }
    parts["other"] = total - sum(parts.values())
    return parts


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb(field_name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measured_call(settings: dict[str, Any]) -> dict[str, Any]:
    """One replicate() call (in this subprocess); its figures."""
    timers = Timers()
    if settings["breakdown"]:
        instrument(timers)
    target = CdcTarget(TableName(*settings["target"]), strategy(settings["policy"]))
    options = {"batch_changes": settings["batch"]} if settings["batch"] else {}
    cdc_settings = CdcSettings(slot=settings["slot"], publication=settings["slot"], **options)
    profile = cProfile.Profile() if settings["profile"] else None
    with psycopg.connect(settings["sink"], autocommit=True) as sink:
        rss_before = rss_mb("VmRSS")
        reset = reset_peak_rss()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        if profile:
            profile.enable()
        result = replicate(
            connector(settings["source"]),
            connector(settings["sink"]),
            sink,
            TableName(*settings["table"]),
            target,
            cdc_settings,
            pipeline=settings["slot"],
        )
        if profile:
            profile.disable()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        peak = rss_mb("VmHWM") if reset else None
    if result.snapshot is not None:
        raise RuntimeError(f"the measured call took a snapshot: {result.snapshot_reason}")
    before_lsn = result.position_before.value if result.position_before else None
    after_lsn = result.position_after.value if result.position_after else None
    top = ""
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        top = out.getvalue()
    return {
        "wall": wall,
        "changes": result.changes,
        "transactions": sum(b.transactions for b in result.batches),
        "batches": len(result.batches),
        "rows_applied": result.rows_applied,
        "lsn": [before_lsn, after_lsn],
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "cpu_s": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime,
        "parts": breakdown(wall, timers.seconds) if settings["breakdown"] else None,
        "statements": dict(timers.statements),
        "profile": top,
    }


def connector(uri: str) -> Callable[..., Any]:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with psycopg.connect(uri, **kwargs) as conn:
            yield conn

    return connect


def strategy(policy: str) -> StrategySpec:
    return StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy=policy)  # type: ignore[arg-type]


# -- the bench ------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    scenario: Scenario
    policy: str
    source_table: TableName
    target: TableName
    slot: str
    figures: dict[str, Any] | None = None
    valid: bool = False
    snapshot_s: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.scenario.name} / {self.policy}"


def snapshot(pipeline: Pipeline, source_uri: str, sink_uri: str) -> None:
    """The pipeline's first run: its slot and the initial snapshot (not measured as CDC)."""
    started = time.perf_counter()
    with psycopg.connect(sink_uri, autocommit=True) as sink:
        result = replicate(
            connector(source_uri),
            connector(sink_uri),
            sink,
            pipeline.source_table,
            CdcTarget(pipeline.target, strategy(pipeline.policy)),
            CdcSettings(slot=pipeline.slot, publication=pipeline.slot),
            pipeline=pipeline.slot,
        )
    pipeline.snapshot_s = time.perf_counter() - started
    assert result.snapshot is not None and not result.batches


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


def checksum(uri: str, table: TableName) -> tuple[int, int]:
    query = CHECKSUM.format(table=f'"{table.schema}"."{table.name}"')
    with psycopg.connect(uri, options=CHECK_OPTIONS) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0]), int(row[1])


def wal_mb(source_uri: str, lsns: list[str | None]) -> float | None:
    if None in lsns:
        return None
    with psycopg.connect(source_uri) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", lsns[::-1]).fetchone()
    return float(row[0]) / 1e6 if row else None


def drop_slots(source_uri: str, pipelines: list[Pipeline]) -> None:
    """Slots pin WAL: drop a scenario's once it is measured."""
    with psycopg.connect(source_uri, autocommit=True) as conn:
        for p in pipelines:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s",
                (p.slot,),
            )
            conn.execute(f'DROP PUBLICATION IF EXISTS "{p.slot}"')


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
        f" {'changes/s':>9} {'WAL MB':>7} {'RSS MB':>6} {'peak MB':>7} {'CPU s':>6}  check"
    )
    for p in pipelines:
        f = p.figures
        if f is None:
            continue
        print(
            f"  {p.name:<24} {f['changes']:>9,} {f['transactions']:>5,} {f['batches']:>7}"
            f" {f['wall']:>7.2f} {f['changes'] / f['wall']:>9,.0f} {fmt(f['wal_mb'], '7.0f')}"
            f" {f['rss_before_mb']:>6.0f} {fmt(f['peak_rss_mb'], '7.0f')} {f['cpu_s']:>6.1f}"
            f"  {'ok' if p.valid else 'INVALID'}"
        )
    print(
        "  RSS MB: the subprocess before the call (interpreter, pgflow, psycopg); peak MB: its"
        " VmHWM during the call.\n  CPU s: the client's CPU time (user + system) during the"
        " call; WAL MB: the source WAL between the positions before and after."
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
    names = ("slot", "fetch", "decode", "rows", "copy", "apply", "advance", "other")
    print("\nwhere the time went, seconds (share of the call):")
    print(f"  {'scenario / policy':<24} " + " ".join(f"{n:>13}" for n in names))
    for p in pipelines:
        if p.figures is None or p.figures["parts"] is None:
            continue
        parts, wall = p.figures["parts"], p.figures["wall"]
        cells = " ".join(f"{parts[n]:>7.2f} ({parts[n] / wall:>3.0%})" for n in names)
        print(f"  {p.name:<24} {cells}")
    legend = inspect.cleandoc(breakdown.__doc__ or "").split("\n", 2)[2]
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

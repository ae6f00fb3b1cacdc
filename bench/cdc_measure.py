"""The CDC bench's measured call (bench/cdc.py), run in a subprocess of its own.

`python -m bench.cdc --measure SETTINGS` runs measured_call: one replicate() call, its peak RSS,
CPU time and, unless BENCH_CDC_BREAKDOWN=0, where its time went (`breakdown`), measured by
wrapping pgflow's own functions in the subprocess (`instrument`; pgflow is not changed).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pgflow.flows.cdc.applier as cdc_applier
import pgflow.flows.cdc.stream as cdc_stream
import psycopg

import pgflow.flows.cdc.segment as cdc_segment
import pgflow.sources.cdc as source_cdc
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcSettings, CdcTarget
from pgflow.flows.cdc.run import replicate
from pgflow.sinks.postgres.sql_log import SqlLog


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

"""The CDC bench's measured call (bench/cdc.py), run in a subprocess of its own.

`python -m bench.cdc --measure SETTINGS` runs measured_call: one replicate() call, its peak RSS,
CPU time (the client's and, given their postmasters, both clusters'), and, unless
BENCH_CDC_BREAKDOWN=0, where its time went (`breakdown`), measured by wrapping pgflow's own
functions in the subprocess (`instrument`; pgflow is not changed). bench/cdc_group.py measures
a group's call with the same instruments.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import pgflow.flows.cdc.group_applier as group_applier
import pgflow.flows.cdc.group_stream as group_stream
import pgflow.sources.group_changes as group_changes
from bench.server_cpu import cluster_cpu_s
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcSettings, CdcTarget
from pgflow.flows.cdc.run import replicate
from pgflow.flows.cdc.segment import Segment
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.replication_stream import ReplicationStream

APPLY_THREAD = "pgflow-cdc-apply"  # group_applier's thread: its time is apart from the reader's
# The reading (main) thread's parts, which add up to the call's wall time (see `breakdown`).
PARTS = ("stream", "decode", "route", "lines", "copy", "stage_sql", "wait_apply", "other")
# The applying thread's: busy applying, of which SQL statements (the rest: Python, commits).
APPLY_PARTS = ("apply", "apply_sql")
# Before the servers' CPU is read again: a closed stream's walsender exits, and is reaped into
# its postmaster's cutime, a moment after the call returns.
SETTLE_S = 0.5


@dataclass
class Timers:
    """Seconds spent in each part of one call, measured by wrapping pgflow's own functions
    (the subprocess only: pgflow is not changed)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    statements: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    in_lines: bool = False

    def timed_iterator(self, name: str, items: Iterator[Any]) -> Iterator[Any]:
        """`items`, adding the time spent getting them to `name`."""
        clock = time.perf_counter
        total = 0.0
        try:
            started = clock()
            for item in items:
                total += clock() - started
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
    messages = ReplicationStream.messages
    ReplicationStream.messages = lambda self: timers.timed_iterator("stream", messages(self))  # type: ignore[method-assign]
    routed = group_stream.group_changes
    group_stream.group_changes = lambda *a: timers.timed_iterator("events", routed(*a))
    group_changes.decode = timers.timed_call("decode", group_changes.decode)
    # Per member and batch, whatever its target (Postgres or Delta: the applier's one seam).
    applier = group_applier.GroupApplier
    applier._apply_member = timers.timed_call("apply", applier._apply_member)  # type: ignore[method-assign]
    submit, drain = group_applier.GroupApplier.submit, group_applier.GroupApplier.drain
    group_applier.GroupApplier.submit = timers.timed_call("wait_apply", submit)  # type: ignore[method-assign]
    group_applier.GroupApplier.drain = timers.timed_call("wait_apply", drain)  # type: ignore[method-assign]
    _instrument_segment(timers)
    execute = SqlLog.execute

    def timed_execute(self: SqlLog, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        started = time.perf_counter()
        try:
            return execute(self, query, params)
        finally:
            spent = time.perf_counter() - started
            applying = threading.current_thread().name == APPLY_THREAD
            if applying:
                text = query if isinstance(query, str) else query.as_string(self.conn)
                timers.statements[statement_label(text)] += spent
            timers.seconds["apply_sql" if applying else "sql"] += spent

    SqlLog.execute = timed_execute  # type: ignore[method-assign]


def _instrument_segment(timers: Timers) -> None:
    """A change into a COPY line (upsert, remove), minus the COPY writes they trigger."""
    upsert, remove, write = Segment.upsert, Segment.remove, Segment._write

    def lines(function: Callable[..., None]) -> Callable[..., None]:
        def call(self: Segment, event: Any) -> None:
            timers.in_lines = True
            started = time.perf_counter()
            try:
                function(self, event)
            finally:
                timers.seconds["lines"] += time.perf_counter() - started
                timers.in_lines = False

        return call

    def timed_write(self: Segment) -> None:
        started = time.perf_counter()
        write(self)
        spent = time.perf_counter() - started
        timers.seconds["copy"] += spent
        if timers.in_lines:
            timers.seconds["copy_in_lines"] += spent

    Segment.upsert = lines(upsert)  # type: ignore[method-assign]
    Segment.remove = lines(remove)  # type: ignore[method-assign]
    Segment._write = timed_write  # type: ignore[method-assign]


def breakdown(total: float, s: dict[str, float]) -> dict[str, float]:
    """The call's wall time in parts of its reading thread that add up to it, then the
    applying thread's busy time (in parallel with them).

    stream: waiting for and reading the replication stream (the server's walsender decoding
      the WAL, network, copy-both frames: ReplicationStream.messages);
    decode: pgoutput messages into Python values (pgoutput.decode);
    route: a decoded message to its table's event (group_changes minus stream and decode);
    lines: a change into a COPY text line (Segment.upsert/remove, minus COPY writes);
    copy: COPY of the lines into the staging tables on the sink;
    stage_sql: other statements on the staging connection (creating staging tables);
    wait_apply: the reader waiting for the applier (a staged batch waits while one applies);
    other: the rest (catalog reads, positions, connections, routing the stager's events);
    apply: the applying thread busy (_apply_member: one sink transaction per table and batch);
    apply_sql: of which the SQL statements (merge, deletes, position, drop of staging).
    """
    parts = {
        "stream": s["stream"],
        "decode": s["decode"],
        "route": s["events"] - s["stream"] - s["decode"],
        "lines": s["lines"] - s["copy_in_lines"],
        "copy": s["copy"],
        "stage_sql": s["sql"],
        "wait_apply": s["wait_apply"],
    }
    parts["other"] = total - sum(parts.values())
    parts["apply"] = s["apply"]
    parts["apply_sql"] = s["apply_sql"]
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
    with measuring(settings, profile) as figures:
        result = replicate(
            connector(settings["source"]),
            connector(settings["sink"]),
            TableName(*settings["table"]),
            target,
            cdc_settings,
            pipeline=settings["slot"],
        )
    if result.snapshot is not None:
        raise RuntimeError(f"the measured call took a snapshot: {result.snapshot_reason}")
    before_lsn = result.position_before.value if result.position_before else None
    after_lsn = result.position_after.value if result.position_after else None
    wall = figures["wall"]
    return {
        **figures,
        "changes": result.changes,
        "transactions": sum(b.transactions for b in result.batches),
        "batches": len(result.batches),
        "rows_applied": result.rows_applied,
        "lsn": [before_lsn, after_lsn],
        "parts": breakdown(wall, timers.seconds) if settings["breakdown"] else None,
        "statements": dict(timers.statements),
        "profile": profile_text(profile),
    }


@contextmanager
def measuring(
    settings: dict[str, Any], profile: cProfile.Profile | None
) -> Iterator[dict[str, Any]]:
    """Times the block; fills the dict it yields with wall, RSS, client and server CPU (the
    clusters' when settings name their postmasters: "postmasters": {"source": pid, ...})."""
    postmasters: dict[str, int] = settings.get("postmasters") or {}
    figures: dict[str, Any] = {}
    rss_before = rss_mb("VmRSS")
    reset = reset_peak_rss()
    servers = {name: cluster_cpu_s(pid) for name, pid in postmasters.items()}
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if profile:
        profile.enable()
    yield figures
    if profile:
        profile.disable()
    figures["wall"] = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    figures["cpu_s"] = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    time.sleep(SETTLE_S)
    for name, pid in postmasters.items():
        figures[f"{name}_cpu_s"] = cluster_cpu_s(pid) - servers[name]
    figures["rss_before_mb"] = rss_before
    figures["peak_rss_mb"] = rss_mb("VmHWM") if reset else None


def profile_text(profile: cProfile.Profile | None) -> str:
    if profile is None:
        return ""
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def connector(uri: str) -> Callable[..., Any]:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with psycopg.connect(uri, **kwargs) as conn:
            yield conn

    return connect


def strategy(policy: str) -> StrategySpec:
    return StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy=policy)  # type: ignore[arg-type]

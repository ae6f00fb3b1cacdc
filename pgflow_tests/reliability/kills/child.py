"""The child: one run of the IO manager, with kill instrumentation, forked from a forkserver.

The forkserver preloads this module (dagster, psycopg, pgflow, polars, deltalake imported once,
no thread pool started), so a run costs a fork, not an interpreter start, and no child inherits
the threads of the pytest worker.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from deltalake.table import TableMerger
from psycopg import sql

import pgflow.flows.delta_load as delta_load
import pgflow.sinks.delta.context as delta_context
from pgflow.bindings.io_managers import DeltaSinkIOManager, PipelineRead, PostgresSinkIOManager
from pgflow.config.loader import load_project
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.sources import snapshot_slices
from pgflow.sources.arrow import ArrowRead
from pgflow_tests.reliability.kills.observe import pg_snapshot

CHILD_TIMEOUT = 120.0


@dataclass(frozen=True)
class ChildJob:
    spec_dir: str
    env: dict[str, str]
    app_name: str
    sink_dbname: str | None  # which psycopg connections are the sink's
    record_path: str  # the child writes its record (JSON) here when it ends normally
    kill_at: int | None = None  # SIGKILL itself at this tick
    record_ticks: bool = False
    kill_at_seconds: float | None = None  # SIGKILL itself this long after the run starts
    observe_uri: str | None = None  # after each sink commit, snapshot the target here
    exclude_columns: tuple[str, ...] = ()
    delta_batch_rows: int | None = None
    min_slice_blocks: int | None = None


class _Ticker:
    def __init__(self, job: ChildJob) -> None:
        self.job = job
        self.count = 0
        self.labels: list[str] = []
        self.times: list[float] = []  # seconds since the run started, per recorded tick
        self.last = "start"
        self.started = time.monotonic()
        self.observed: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def tick(self, label: str) -> None:
        if getattr(self._local, "muted", False):
            return  # the observer's own queries
        with self._lock:
            self.count += 1
            n = self.count
            self.last = label
            if self.job.record_ticks:
                self.labels.append(label)
                self.times.append(time.monotonic() - self.started)
        if n == self.job.kill_at:
            Path(self.job.record_path + ".killed").write_text(label)
            os.kill(os.getpid(), signal.SIGKILL)

    def committed(self, label: str) -> None:
        if getattr(self._local, "muted", False):
            return
        self.tick(label)
        if self.job.observe_uri is not None and label.startswith("sink"):
            self._local.muted = True
            try:
                self.observed.append(pg_snapshot(self.job.observe_uri, self.job.exclude_columns))
            finally:
                self._local.muted = False


def _side(conn: psycopg.Connection[Any], job: ChildJob) -> str:
    try:
        return "sink" if conn.info.dbname == job.sink_dbname else "source"
    except Exception:
        return "closed"


def _head(query: object, conn: psycopg.Connection[Any]) -> str:
    if isinstance(query, sql.Composable):
        try:
            query = query.as_string(conn)
        except Exception:
            query = repr(query)
    text = query.decode(errors="replace") if isinstance(query, bytes) else str(query)
    return " ".join(text.split()[:3])[:60]


def _install_hooks(ticker: _Ticker, job: ChildJob) -> None:
    """Test-only instrumentation, in the child process only."""
    _hook_psycopg(ticker, job)
    _hook_delta(ticker)
    if job.delta_batch_rows is not None:
        defaults = dict(delta_load.load_delta.__kwdefaults__ or {})
        defaults["batch_rows"] = job.delta_batch_rows
        delta_load.load_delta.__kwdefaults__ = defaults


def _hook_psycopg(ticker: _Ticker, job: ChildJob) -> None:
    """Ticks before every statement and COPY chunk, around every commit."""
    cursor_execute = psycopg.Cursor.execute
    server_execute = psycopg.ServerCursor.execute
    copy_write = psycopg.Copy.write
    transaction_exit = psycopg.Transaction.__exit__
    connection_commit = psycopg.Connection.commit

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        ticker.tick(f"{_side(self.connection, job)} {_head(query, self.connection)}")
        return cursor_execute(self, query, *args, **kwargs)

    def server_cursor_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        ticker.tick(f"{_side(self.connection, job)} {_head(query, self.connection)}")
        return server_execute(self, query, *args, **kwargs)

    def write(self: Any, buffer: Any) -> Any:
        ticker.tick("sink copy chunk")
        return copy_write(self, buffer)

    def exit_(self: Any, exc_type: Any, exc: Any, tb: Any) -> Any:
        commits = exc_type is None and self._outer_transaction and not self.force_rollback
        side = _side(self._conn, job)
        if commits:
            ticker.tick(f"{side} commit")
        result = transaction_exit(self, exc_type, exc, tb)
        if commits:
            ticker.committed(f"{side} committed")
        return result

    def commit(self: Any) -> None:
        side = _side(self, job)
        ticker.tick(f"{side} commit")
        connection_commit(self)
        ticker.committed(f"{side} committed")

    psycopg.Cursor.execute = execute
    psycopg.ServerCursor.execute = server_cursor_execute
    psycopg.Copy.write = write
    psycopg.Transaction.__exit__ = exit_
    psycopg.Connection.commit = commit


def _hook_delta(ticker: _Ticker) -> None:
    """Ticks around every Delta write and merge (their commits), and per Arrow batch read."""
    original_write = delta_context.write_deltalake
    original_merge = TableMerger.execute
    original_batches = ArrowRead.record_batches

    def delta_write(*args: Any, **kwargs: Any) -> Any:
        ticker.tick("delta write")
        result = original_write(*args, **kwargs)
        ticker.tick("delta committed")
        return result

    def delta_merge(self: Any) -> Any:
        ticker.tick("delta merge")
        result = original_merge(self)
        ticker.tick("delta committed")
        return result

    def batches(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in original_batches(self, *args, **kwargs):
            ticker.tick("arrow batch")
            yield batch

    delta_context.write_deltalake = delta_write
    TableMerger.execute = delta_merge
    ArrowRead.record_batches = batches


def _timed_kill(ticker: _Ticker) -> None:
    Path(ticker.job.record_path + ".killed").write_text(f"after {ticker.last}")
    os.kill(os.getpid(), signal.SIGKILL)


def _handle_output(job: ChildJob) -> None:
    """What a materialization's step does with the read: the IO manager writes it."""
    project = load_project(job.spec_dir)
    spec = project.pipelines[0]
    connections = PostgresConnections(application_name=job.app_name)
    delta = DeltaStorage()
    if spec.sink.type == "delta":
        manager: Any = DeltaSinkIOManager(connections=connections, delta=delta)
    else:
        manager = PostgresSinkIOManager(
            connections=connections, delta=delta, mode=spec.sink.strategy.mode
        )
    manager.handle_output(_OUTPUT_CONTEXT, PipelineRead(spec))


def child_main(job: ChildJob) -> None:
    """Entry point of a child process (forked from the forkserver)."""
    os.environ.update(job.env)
    if job.min_slice_blocks is not None:
        snapshot_slices.MIN_BLOCKS_PER_SLICE = job.min_slice_blocks
    ticker = _Ticker(job)
    _install_hooks(ticker, job)
    started = ticker.started = time.monotonic()
    timer = None
    if job.kill_at_seconds is not None:
        timer = threading.Timer(job.kill_at_seconds, _timed_kill, (ticker,))
        timer.daemon = True
        timer.start()
    error = None
    try:
        _handle_output(job)
    except BaseException:
        error = traceback.format_exc()
    if timer is not None:
        timer.cancel()  # the load is over: a later kill would only hit the record below
    record = {
        "ticks": ticker.count,
        "labels": ticker.labels,
        "times": ticker.times,
        "observed": ticker.observed,
        "seconds": time.monotonic() - started,
        "error": error,
    }
    Path(job.record_path + ".tmp").write_text(json.dumps(record))
    os.replace(job.record_path + ".tmp", job.record_path)  # whole, or not there
    os._exit(1 if error else 0)  # skip interpreter teardown: nothing left to flush


# Made once, in the forkserver (which preloads this module), so that a child does not pay for
# it (~1 s: an ephemeral instance). Every child is a fresh fork: nothing carries over.
_OUTPUT_CONTEXT = dg.build_output_context(asset_key=dg.AssetKey(["landing", "items"]))
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


@dataclass
class ChildOutcome:
    exitcode: int | None
    record: dict[str, Any] | None
    kill_label: str | None
    seconds: float

    @property
    def killed(self) -> bool:
        return self.exitcode == -signal.SIGKILL


def run_child(job: ChildJob) -> ChildOutcome:
    """Run `job` in a forked child and wait for it to end (or be killed)."""
    for suffix in ("", ".killed"):
        Path(job.record_path + suffix).unlink(missing_ok=True)
    started = time.monotonic()
    process = _CONTEXT.Process(target=child_main, args=(job,), daemon=True)
    process.start()
    process.join(CHILD_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"child run did not end within {CHILD_TIMEOUT}s")
    seconds = time.monotonic() - started
    exitcode = process.exitcode
    process.close()
    record_file = Path(job.record_path)
    record = json.loads(record_file.read_text()) if record_file.exists() else None
    label_file = Path(job.record_path + ".killed")
    label = label_file.read_text() if label_file.exists() else None
    return ChildOutcome(exitcode, record, label, seconds)

"""Kill harness: SIGKILL a real load at many points and check the target is before or after.

What runs: the IO manager, as a Dagster step runs it, minus Dagster's executor. A child process
loads the spec from YAML (`load_project`), builds the IO manager the code location uses
(`IO_MANAGERS[mode]`, or `DeltaSinkIOManager`, with `PostgresConnections` and `DeltaStorage`)
and calls `handle_output(<an OutputContext built by build_output_context>, PipelineRead(spec))`,
which dispatches to `load_table`, `replicate`, `sync_delta` or `load_delta` as in a
materialization. Not run: Dagster's step machinery around it (retries, events, checks).

Processes: children are forked from a multiprocessing *forkserver* that preloads this module
(dagster, psycopg, pgflow, polars, deltalake imported once, no thread pool started), so a run
costs a fork, not an interpreter start, and no child inherits the threads of the pytest worker.

Kill points: in the child only, test instrumentation wraps psycopg's `Cursor.execute`,
`ServerCursor.execute`, `Copy.write`, `Transaction.__exit__` and `Connection.commit`, and for
Delta `write_deltalake`, `TableMerger.execute` and the Arrow batches of the read. Each wrapper
counts "ticks" (before every call; after every commit and Delta commit) and calls
`os.kill(os.getpid(), SIGKILL)` at tick k. A recorded reference run lists the ticks of a whole
load; a sweep kills at every tick except COPY rows (statements on source and sink, commits,
Delta writes, Arrow batches), at spread points of the COPY stream, thinned evenly to a limit
that keeps every tick around a commit, plus at random times within the load's duration.
Production code carries no hooks; a Delta sink's child reads in smaller Arrow batches
(`load_delta`'s `batch_rows` default) so that the stream has several.

State: before each kill the target is restored to BEFORE: the sink database is cloned from a
template (`CREATE DATABASE ... TEMPLATE`), a CDC slot is copied from a template slot that never
moves (`pg_copy_logical_replication_slot`), a Delta table folder is copied. After the kill,
once the killed client's backends (and walsenders) are gone from pg_stat_activity, the
target's rows (count + md5 of the sorted row texts), its relations (tables, partitions,
views, indexes) and its stored position (`_pgflow.pipeline_state`; for Delta the version, the
pipeline's run counter and the position in its commit) must equal BEFORE or AFTER, AFTER
being what an uninterrupted reference run made. Positions that depend on when a run reads
(xmin checkpoint, CDC LSN) must be past BEFORE's and past the source change instead of equal.
Resumable strategies (Delta -> Postgres sync: a commit per batch; CDC over several batches: a
commit per source transaction group) may also stop at a state their reference run committed
(rows and position both; CDC: the target is then the source as of the stored LSN). Then one
more run without a kill must reach AFTER (convergence) and leave no staging table behind
(CDC: also the committed staging tables a killed run left).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
from deltalake import DeltaTable, write_deltalake
from deltalake.table import TableMerger
from psycopg import sql

import pgflow.sinks.delta.context as delta_context
import pgflow.sinks.delta.load as delta_load
from pgflow.bindings.io_managers import IO_MANAGERS, DeltaSinkIOManager, PipelineRead
from pgflow.config.loader import load_project
from pgflow.config.model import TableName
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.sinks.delta.state import read_state
from pgflow.sources import snapshot_slices
from pgflow.sources.arrow import ArrowRead

TARGET = TableName("landing", "items")
PIPELINE = "kills_items"
PROBE_APP = "pgflow-kills-probe"
PINNED = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"
# Ticks of a stream, of which a sweep takes a few spread points (every other tick is taken);
# Arrow batches are few (a Delta load's own ticks are), so each of them is a kill point.
BULK_LABELS = ("sink copy chunk",)
COMMIT_WORDS = ("commit", "delta write", "delta merge")
CHILD_TIMEOUT = 120.0

# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

SOURCE_DDL = """
CREATE TABLE public.items (
    id bigint PRIMARY KEY,
    region text NOT NULL,
    day date NOT NULL,
    qty integer NOT NULL,
    price numeric(10,2),
    note text,
    updated_at timestamptz NOT NULL
);
INSERT INTO public.items
SELECT g, (ARRAY['eu','us','apac','latam'])[1 + g % 4], date '2024-01-01' + (g % 60), g % 97,
       round(g * 1.37, 2), CASE WHEN g % 11 = 0 THEN NULL ELSE repeat(md5(g::text), 3) END,
       timestamptz '2024-01-01 00:00+00' + g * interval '1 second'
FROM generate_series(1, 4000) g;
"""

# One source transaction: updates (moving the cursor), inserts and deletes.
SOURCE_CHANGE = """
UPDATE public.items SET qty = qty + 1000,
       updated_at = timestamptz '2030-01-01 00:00+00' + id * interval '1 second'
WHERE id % 10 = 3;
INSERT INTO public.items
SELECT g, (ARRAY['eu','us','apac','latam'])[1 + g % 4], date '2024-01-01' + (g % 60), g % 97,
       round(g * 1.37, 2), repeat(md5(g::text), 3),
       timestamptz '2030-01-01 00:00+00' + g * interval '1 second'
FROM generate_series(4001, 4300) g;
DELETE FROM public.items WHERE id % 50 = 7;
"""

PARTITIONED_TARGET = """
CREATE SCHEMA landing;
CREATE TABLE landing.items (
    id bigint NOT NULL, region text NOT NULL, day date NOT NULL, qty integer NOT NULL,
    price numeric(10,2), note text, updated_at timestamptz NOT NULL, PRIMARY KEY (id, region)
) PARTITION BY LIST (region);
CREATE TABLE landing.items_eu PARTITION OF landing.items FOR VALUES IN ('eu');
CREATE TABLE landing.items_us PARTITION OF landing.items FOR VALUES IN ('us');
CREATE TABLE landing.items_apac PARTITION OF landing.items FOR VALUES IN ('apac');
CREATE TABLE landing.items_latam PARTITION OF landing.items FOR VALUES IN ('latam');
"""

# What a rename-swap (exchange, shadow_swap) must carry over: a dependent view, an index.
TARGET_EXTRAS = """
CREATE VIEW landing.items_eu AS SELECT id, qty FROM landing.items WHERE region = 'eu';
CREATE INDEX items_qty ON landing.items (qty);
"""

POSTGRES_SOURCE = """source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {options}
"""
DELTA_SOURCE = """source:
  type: delta
  path: {lake}/source
  options: {{deletes: key_pass}}
"""
POSTGRES_SINK = """sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {strategy}
name: kills_items
"""
DELTA_SINK = """sink:
  type: delta
  path: {lake}/target
  strategy: {strategy}
name: kills_items
"""


@dataclass(frozen=True)
class Scenario:
    """One strategy under test: its spec, and how its target and position are judged."""

    name: str
    source: str  # "postgres" | "delta"
    sink: str  # "postgres" | "delta"
    options: str = "{}"  # source.options (Postgres sources)
    strategy: str = "{mode: full_refresh}"
    # exact: AFTER's position is one value; advances: it depends on when the run reads
    # (xmin checkpoint, CDC LSN): of the same kind and source, never behind BEFORE's, and for
    # CDC past the source change's commit.
    position_rule: str = "exact"
    source_equality: str = "equal"  # equal | superset (merges keep rows deleted at the source)
    partial: bool = False  # resumable by design: committed resume points are allowed too
    exclude_columns: tuple[str, ...] = ()  # per-run values (delta sync's load timestamp)
    sink_ddl: str | None = None  # run on the sink before the first load
    env: dict[str, str] = field(default_factory=dict)
    delta_batch_rows: int | None = None  # Delta sink: Arrow batch size of the read
    cdc: bool = False
    first_load: bool = False  # BEFORE is no target at all: the kills hit its creation
    split_change: bool = False  # the source change in three transactions, not one
    target_ddl: str | None = None  # run on the sink after the first load (views, indexes)
    min_slice_blocks: int | None = None  # parallel exchange: lets the small table split

    def spec_yaml(self, lake: Path, slot: str) -> str:
        options = self.options.replace("{slot}", slot)
        if self.source == "delta":
            head = DELTA_SOURCE.format(lake=lake)
        else:
            head = POSTGRES_SOURCE.format(options=options)
        if self.sink == "delta":
            return head + DELTA_SINK.format(lake=lake, strategy=self.strategy)
        return head + POSTGRES_SINK.format(strategy=self.strategy)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("full_refresh/truncate_insert", "postgres", "postgres"),
        Scenario(
            "full_refresh/exchange",
            "postgres",
            "postgres",
            strategy="{mode: full_refresh, method: exchange}",
            target_ddl=TARGET_EXTRAS,
        ),
        Scenario(
            "full_refresh/exchange_parallel",
            "postgres",
            "postgres",
            strategy="{mode: full_refresh, method: exchange, parallelism: 3}",
            target_ddl=TARGET_EXTRAS,
            min_slice_blocks=8,  # the 4,300 rows (~75 blocks) split into 3 ranges
        ),
        Scenario(
            "merge/delete_insert",
            "postgres",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: delete_insert}",
            source_equality="superset",
        ),
        Scenario(
            "merge/upsert",
            "postgres",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
            source_equality="superset",
        ),
        Scenario(
            "merge/shadow_swap",
            "postgres",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: shadow_swap}",
            source_equality="superset",
            target_ddl=TARGET_EXTRAS,
        ),
        Scenario(
            "replace",
            "postgres",
            "postgres",
            strategy="{mode: replace, custom_predicate: \"day >= '2024-01-01'\"}",
        ),
        Scenario(
            "partition_replace/native",
            "postgres",
            "postgres",
            strategy="{mode: partition_replace, partition_column: region, native_mode: required}",
            sink_ddl=PARTITIONED_TARGET,
        ),
        Scenario(
            "partition_replace/delete_insert",
            "postgres",
            "postgres",
            strategy="{mode: partition_replace, partition_column: day}",
        ),
        Scenario(
            "column",
            "postgres",
            "postgres",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            source_equality="superset",
        ),
        Scenario(
            "column/first_load",  # a staged strategy's first load: no staging, into a new target
            "postgres",
            "postgres",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
            first_load=True,
        ),
        Scenario(
            "xmin",
            "postgres",
            "postgres",
            options="{incremental_strategy: xmin}",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
            position_rule="advances",
            source_equality="superset",
        ),
        Scenario(
            "cdc",
            "postgres",
            "postgres",
            options="{incremental_strategy: cdc, slot_name: {slot}, publication_name: {slot}}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            position_rule="advances",
            cdc=True,
        ),
        Scenario(
            "cdc/multi_batch",
            "postgres",
            "postgres",
            options="{incremental_strategy: cdc, slot_name: {slot}, publication_name: {slot},"
            " target_batch_size: 50}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            position_rule="advances",
            cdc=True,
            partial=True,
            split_change=True,
        ),
        Scenario(
            "cdc/first_run",
            "postgres",
            "postgres",
            options="{incremental_strategy: cdc, slot_name: {slot}, publication_name: {slot}}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            position_rule="advances",
            cdc=True,
            first_load=True,
        ),
        Scenario("full_refresh/first_load", "postgres", "postgres", first_load=True),
        Scenario(
            "delta_sink/first_load", "postgres", "delta", delta_batch_rows=200, first_load=True
        ),
        Scenario(
            "delta_sink/merge_column",
            "postgres",
            "delta",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            source_equality="superset",
            delta_batch_rows=25,  # an incremental read of ~700 rows: ~28 batches
        ),
        Scenario(
            "delta_sink/full_refresh",
            "postgres",
            "delta",
            delta_batch_rows=200,
        ),
        Scenario(
            "delta_sync",
            "delta",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            partial=True,
            exclude_columns=("sync_ldts",),
            env={"POSTGRES_CLIENT_BATCH_SIZE": "600", "DELTA_CLIENT_BATCH_SIZE": "500"},
        ),
        Scenario(
            "delta_sync/first_load",
            "delta",
            "postgres",
            strategy="{mode: incremental_merge, unique_key: [id]}",
            partial=True,
            first_load=True,
            exclude_columns=("sync_ldts",),
            env={"POSTGRES_CLIENT_BATCH_SIZE": "600", "DELTA_CLIENT_BATCH_SIZE": "500"},
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# The child: one run of the IO manager, with kill instrumentation
# ---------------------------------------------------------------------------------------------


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


def _side(conn: psycopg.Connection, job: ChildJob) -> str:
    try:
        return "sink" if conn.info.dbname == job.sink_dbname else "source"
    except Exception:
        return "closed"


def _head(query: object, conn: psycopg.Connection) -> str:
    if isinstance(query, sql.Composable):
        try:
            query = query.as_string(conn)
        except Exception:
            query = repr(query)
    text = query.decode(errors="replace") if isinstance(query, bytes) else str(query)
    return " ".join(text.split()[:3])[:60]


def _install_hooks(ticker: _Ticker, job: ChildJob) -> None:
    """Test-only instrumentation, in the child process only."""
    cursor_execute = psycopg.Cursor.execute
    server_execute = psycopg.ServerCursor.execute
    copy_write = psycopg.Copy.write
    transaction_exit = psycopg.Transaction.__exit__
    connection_commit = psycopg.Connection.commit

    def execute(self, query, *args, **kwargs):
        ticker.tick(f"{_side(self.connection, job)} {_head(query, self.connection)}")
        return cursor_execute(self, query, *args, **kwargs)

    def server_cursor_execute(self, query, *args, **kwargs):
        ticker.tick(f"{_side(self.connection, job)} {_head(query, self.connection)}")
        return server_execute(self, query, *args, **kwargs)

    def write(self, buffer):
        ticker.tick("sink copy chunk")
        return copy_write(self, buffer)

    def exit_(self, exc_type, exc, tb):
        commits = exc_type is None and self._outer_transaction and not self.force_rollback
        side = _side(self._conn, job)
        if commits:
            ticker.tick(f"{side} commit")
        result = transaction_exit(self, exc_type, exc, tb)
        if commits:
            ticker.committed(f"{side} committed")
        return result

    def commit(self):
        side = _side(self, job)
        ticker.tick(f"{side} commit")
        connection_commit(self)
        ticker.committed(f"{side} committed")

    psycopg.Cursor.execute = execute
    psycopg.ServerCursor.execute = server_cursor_execute
    psycopg.Copy.write = write
    psycopg.Transaction.__exit__ = exit_
    psycopg.Connection.commit = commit

    original_write = delta_context.write_deltalake
    original_merge = TableMerger.execute
    original_batches = ArrowRead.record_batches

    def delta_write(*args, **kwargs):
        ticker.tick("delta write")
        result = original_write(*args, **kwargs)
        ticker.tick("delta committed")
        return result

    def delta_merge(self):
        ticker.tick("delta merge")
        result = original_merge(self)
        ticker.tick("delta committed")
        return result

    def batches(self, *args, **kwargs):
        for batch in original_batches(self, *args, **kwargs):
            ticker.tick("arrow batch")
            yield batch

    delta_context.write_deltalake = delta_write
    TableMerger.execute = delta_merge
    ArrowRead.record_batches = batches
    if job.delta_batch_rows is not None:
        defaults = dict(delta_load.load_delta.__kwdefaults__ or {})
        defaults["batch_rows"] = job.delta_batch_rows
        delta_load.load_delta.__kwdefaults__ = defaults


def _timed_kill(ticker: _Ticker) -> None:
    Path(ticker.job.record_path + ".killed").write_text(f"after {ticker.last}")
    os.kill(os.getpid(), signal.SIGKILL)


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
        project = load_project(job.spec_dir)
        spec = project.pipelines[0]
        connections = PostgresConnections(application_name=job.app_name)
        delta = DeltaStorage()
        if spec.sink.type == "delta":
            manager: Any = DeltaSinkIOManager(connections=connections, delta=delta)
        else:
            manager = IO_MANAGERS[spec.sink.strategy.mode](connections=connections, delta=delta)
        manager.handle_output(_OUTPUT_CONTEXT, PipelineRead(spec))
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


# ---------------------------------------------------------------------------------------------
# Reading a target: rows, relations, stored position
# ---------------------------------------------------------------------------------------------


def pg_snapshot(uri: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The sink's target as comparable values: row count and digest, user relations, position."""
    with psycopg.connect(uri, options=PINNED, application_name=PROBE_APP, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")
        relations = [
            r[0]
            for r in conn.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'i', 'I')"
                " AND n.nspname NOT IN ('information_schema', '_pgflow_staging')"
                " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1"
            )
        ]
        staging, untagged = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE obj_description(c.oid, 'pg_class') IS NULL)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = '_pgflow_staging' AND c.relkind = 'r'"
        ).fetchone()
        snapshot: dict[str, Any] = {
            "rows": None,
            "digest": None,
            "relations": relations,
            "position": None,
            "staging": staging,
            "untagged_staging": untagged,  # staging tables without the orphan mark
        }
        if str(TARGET) in relations:
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    (str(TARGET),),
                )
                if r[0] not in exclude
            ]
            row_text = sql.SQL("ROW({})::text").format(
                sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)
            )
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(r, E'\\n' ORDER BY r)), '')"
                " FROM (SELECT {} AS r FROM {} t) s"
            ).format(row_text, sql.Identifier(TARGET.schema, TARGET.name))
            snapshot["rows"], snapshot["digest"] = conn.execute(query).fetchone()
        if "_pgflow.pipeline_state" in relations:
            row = conn.execute(
                "SELECT kind, source, value, value_type, pipeline, updated_at::text"
                " FROM _pgflow.pipeline_state WHERE target_schema = %s AND target_table = %s",
                (TARGET.schema, TARGET.name),
            ).fetchone()
            snapshot["position"] = _normalized_position(row[:5] if row else None)
            snapshot["written"] = row[5] if row else None  # now() of the run that wrote it
    return snapshot


def _normalized_position(row: tuple | None) -> list[Any] | None:
    if row is None:
        return None
    kind, source, value, value_type, pipeline = row
    if value_type == "delta_sync_v1":  # drop the id of the run that wrote it
        value = json.dumps({k: v for k, v in json.loads(value).items() if k != "run"})
    return [kind, source, value, value_type, pipeline]


def delta_snapshot(path: Path) -> dict[str, Any]:
    """A Delta target as comparable values: version, rows and digest, run and position."""
    if not DeltaTable.is_deltatable(str(path)):
        return {"version": None, "rows": None, "digest": None, "run": 0, "position": None}
    table = DeltaTable(str(path))
    frame = pl.read_delta(str(path), version=table.version())
    frame = frame.sort(sorted(frame.columns))
    digest = hashlib.md5(frame.select(sorted(frame.columns)).write_csv().encode()).hexdigest()
    state = read_state(table, PIPELINE)
    position = None if state.position is None else list(asdict(state.position).values())
    return {
        "version": table.version(),
        "rows": frame.height,
        "digest": digest,
        "run": state.run,
        "position": position,
    }


def position_number(value: str) -> int:
    """A position value as a number: an xmin checkpoint, or an LSN ("16/B374D848")."""
    if "/" in value:
        high, low = value.split("/")
        return (int(high, 16) << 32) + int(low, 16)
    return int(value)


def id_qty_postgres(uri: str, table: str) -> set[tuple[int, int]]:
    with psycopg.connect(uri, application_name=PROBE_APP) as conn:
        return {(int(a), int(b)) for a, b in conn.execute(f"SELECT id, qty FROM {table}")}


def id_qty_delta(path: Path) -> set[tuple[int, int]]:
    frame = pl.read_delta(str(path)).select("id", "qty")
    return {(int(a), int(b)) for a, b in frame.iter_rows()}


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


@dataclass
class KillRecord:
    point: str  # "tick 17 (sink CREATE UNLOGGED TABLE)" or "timed 0.42s"
    killed: bool
    verdict: str  # before | after | partial
    converged: bool
    orphans: int = 0  # committed staging tables the kill left (CDC), dropped by the next run


@dataclass
class Figures:
    strategy: str
    points: int  # distinct kill points where the process was actually killed
    before: int
    after: int
    partial: int
    converged: int
    ticks: int  # ticks of one whole load
    not_killed: int  # timed kills after the load had ended, unreached ticks (not counted)
    orphans: int  # kills that left committed staging tables, all dropped by the next run
    seconds: float

    def line(self) -> str:
        text = (
            f"KILLS {self.strategy}: {self.points} points, {self.before} before, {self.after} after"
        )
        if self.partial:
            text += f", {self.partial} at a committed resume point"
        if self.orphans and self.strategy.startswith("delta_sink"):
            text += f", {self.orphans} left uncommitted data files"
        elif self.orphans:
            text += f", {self.orphans} left staging tables (dropped by the next run)"
        return (
            text + f", converged {self.converged}/{self.points} "
            f"({self.ticks} ticks per load, {self.seconds:.0f}s)"
        )


class KillSweep:
    """One scenario on one cluster: set up BEFORE, record AFTER, then kill and judge."""

    def __init__(self, scenario: Scenario, cluster: Any, workdir: Path) -> None:
        self.scenario = scenario
        self.cluster = cluster
        self.workdir = workdir
        tag = uuid.uuid4().hex[:10]
        self.tag = tag
        self.source_db = f"k_{tag}_src"
        self.template_db = f"k_{tag}_before"
        self.slot = f"pgflow_k_{tag}"
        self.template_slot = f"pgflow_k_{tag}_tpl"
        self.lake = workdir / "lake"
        self.spec_dir = workdir / "specs"
        self.before_lake = workdir / "lake_before"
        self.databases: list[str] = []
        self.runs = 0
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.partials: list[dict[str, Any]] = []
        self.labels: list[str] = []
        self.load_seconds = 0.0
        self.times: list[float] = []
        self.current_db: str | None = None
        self.position_floor: int | None = None
        # Clones are made ahead, in the background, while kills run.
        self.maker = ThreadPoolExecutor(max_workers=1)
        self.prepared: list[Future[str]] = []

    # -- plumbing ------------------------------------------------------------------------------

    def admin(
        self, statement: str | sql.Composable, params: object = None, db: str = "postgres"
    ) -> list[tuple]:
        with psycopg.connect(
            self.cluster.uri(db), autocommit=True, application_name=PROBE_APP
        ) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, template: str | None = None) -> None:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY WAL_LOG").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        for attempt in range(200):
            try:
                self.admin(statement)
                break
            except psycopg.errors.ObjectInUse:  # autovacuum visiting the template
                if attempt == 199:
                    raise
                time.sleep(0.05)
        self.databases.append(name)

    def drop_later(self, name: str) -> None:
        """Drop a database in the background (DROP DATABASE waits for a checkpoint)."""
        with contextlib.suppress(ValueError):
            self.databases.remove(name)
        _DROPPER.submit(_drop_database, self.cluster.uri("postgres"), name)

    def close(self) -> None:
        """Drop what this sweep made on the cluster: its slots, then its databases."""
        self.maker.shutdown(wait=True)
        for future in self.prepared:
            with contextlib.suppress(psycopg.Error):
                future.result()
        for slot in (self.slot, self.template_slot):
            with contextlib.suppress(psycopg.Error, AssertionError):
                self.wait_slot_free(slot)
                self.admin(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = %s",
                    (slot,),
                )
        for name in list(self.databases):
            self.drop_later(name)
        # A DROP DATABASE holds a transaction ID for as long as it runs; one still running
        # when the next test of this worker starts holds back that test's snapshot xmin
        # (an xmin reader would re-read its rows). The sweep ends when its drops have.
        _DROPPER.submit(lambda: None).result()

    def wait_gone(self, app_name: str, timeout: float = 20.0) -> None:
        """Until the killed client's backends (and walsenders) have left pg_stat_activity."""
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        self._wait_until_none(query, app_name, f"backends of {app_name} still there", timeout)

    def wait_slot_free(self, slot: str, timeout: float = 20.0) -> None:
        query = "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active"
        self._wait_until_none(query, slot, f"slot {slot} still active", timeout)

    def _wait_until_none(self, query: str, arg: str, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.admin(query, (arg,)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} after {timeout}s")
            time.sleep(0.01)

    def copy_slot(self, source: str, copy: str) -> None:
        """A copy of a slot at its position (made in the slot's own database)."""
        self.admin(
            "SELECT pg_copy_logical_replication_slot(%s, %s)", (source, copy), db=self.source_db
        )

    def sink_uri(self, db: str | None = None) -> str:
        db = db or self.current_db
        assert db is not None
        return self.cluster.uri(db)

    def job(self, **kwargs: Any) -> ChildJob:
        self.runs += 1
        env = {
            "PGFLOW_CONN_SHOP": self.cluster.uri(self.source_db),
            "PGFLOW_CONN_WAREHOUSE": self.sink_uri(),
            "POSTGRES_MAX_RETRIES": "0",
            **self.scenario.env,
        }
        return ChildJob(
            spec_dir=str(self.spec_dir),
            env=env,
            app_name=f"pgflow-kills-{self.tag}-{self.runs}",
            sink_dbname=None if self.scenario.sink == "delta" else self.current_db,
            record_path=str(self.workdir / f"run-{self.runs}.json"),
            exclude_columns=self.scenario.exclude_columns,
            delta_batch_rows=self.scenario.delta_batch_rows,
            min_slice_blocks=self.scenario.min_slice_blocks,
            **kwargs,
        )

    def run(self, **kwargs: Any) -> ChildOutcome:
        job = self.job(**kwargs)
        outcome = run_child(job)
        self.wait_gone(job.app_name)
        if self.scenario.cdc:
            self.wait_slot_free(self.slot)
        return outcome

    def run_ok(self, **kwargs: Any) -> ChildOutcome:
        outcome = self.run(**kwargs)
        assert outcome.exitcode == 0 and outcome.record is not None, (
            f"{self.scenario.name}: run failed (exit {outcome.exitcode}):\n"
            f"{outcome.record and outcome.record['error']}"
        )
        return outcome

    def snapshot(self) -> dict[str, Any]:
        if self.scenario.sink == "delta":
            return delta_snapshot(self.lake / "target")
        return pg_snapshot(self.sink_uri(), self.scenario.exclude_columns)

    # -- set-up: BEFORE and AFTER --------------------------------------------------------------

    def setup(self) -> None:
        scenario = self.scenario
        self.spec_dir.mkdir(parents=True)
        self.lake.mkdir(parents=True)
        (self.spec_dir / "pipeline.yaml").write_text(scenario.spec_yaml(self.lake, self.slot))
        self.create_database(self.source_db)
        source_uri = self.cluster.uri(self.source_db)
        if scenario.source == "delta":
            write_delta_source(self.lake / "source")
        else:
            with psycopg.connect(source_uri, autocommit=True) as conn:
                conn.execute(SOURCE_DDL)
                conn.execute("ANALYZE public.items")
        self.create_database(self.template_db)
        self.current_db = self.template_db
        if scenario.sink_ddl:
            with psycopg.connect(self.sink_uri(), autocommit=True) as conn:
                conn.execute(scenario.sink_ddl)
        if scenario.first_load:  # BEFORE: no target at all (CDC: no slot either)
            (self.lake / "target").mkdir()
        else:
            self.run_ok()  # the first load
            if scenario.target_ddl:
                with psycopg.connect(self.sink_uri(), autocommit=True) as conn:
                    conn.execute(scenario.target_ddl)
            if scenario.cdc:
                self.run_ok()  # a streaming run: the slot and the stored LSN in step
                self.copy_slot(self.slot, self.template_slot)
            self.position_floor = self.change_source(source_uri)
        if scenario.sink == "delta":
            shutil.copytree(self.lake / "target", self.before_lake)
        self.before = self.snapshot()
        # The reference run: AFTER, the ticks of a whole load, its resume points.
        self.restore()
        observe = self.sink_uri() if scenario.partial else None
        reference = self.run_ok(record_ticks=True, observe_uri=observe)
        assert reference.record is not None
        self.labels = reference.record["labels"]
        self.times = reference.record["times"]
        self.load_seconds = reference.record["seconds"]
        self.after = self.snapshot()
        # A resume point may hold all of AFTER's rows with an unfinished position (a first
        # sync killed between its last batch and its finish): judged by data and position.
        self.partials = [
            s
            for s in reference.record["observed"]
            if not (self.same_data(s, self.after) and s["position"] == self.after["position"])
        ]
        self.check_after(source_uri)
        self.release()

    def change_source(self, source_uri: str) -> int | None:
        """Change the source; returns a lower bound for AFTER's position (advancing rules)."""
        if self.scenario.source == "delta":
            change_delta_source(self.lake / "source")
            return None
        statements = [s for s in SOURCE_CHANGE.split(";") if s.strip()]
        if not self.scenario.split_change:
            statements = [SOURCE_CHANGE]
        with psycopg.connect(source_uri, autocommit=True) as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            for statement in statements:
                with conn.transaction():
                    conn.execute(statement)
        # CDC: AFTER's LSN is past the change's commit. No such floor for xmin: the checkpoint
        # is the snapshot's xmin, which any transaction still running (a DROP DATABASE of
        # this harness, say) holds back below the change's ID; it only never goes back.
        return position_number(lsn) if self.scenario.cdc else None

    def check_after(self, source_uri: str) -> None:
        """AFTER differs from BEFORE and holds the source's rows (all of them, or a superset
        when the strategy keeps rows deleted at the source)."""
        name = self.scenario.name
        assert not self.same_data(self.after, self.before), f"{name}: the run changed nothing"
        if self.scenario.source == "delta":
            source = id_qty_delta(self.lake / "source")
        else:
            source = id_qty_postgres(source_uri, "public.items")
        if self.scenario.sink == "delta":
            target = id_qty_delta(self.lake / "target")
        else:
            target = id_qty_postgres(self.sink_uri(), str(TARGET))
        if self.scenario.source_equality == "equal":
            assert target == source, f"{name}: AFTER is not the source"
        else:
            assert source <= target, f"{name}: AFTER lacks source rows"
            assert len(target - source) > 0, f"{name}: deletes expected to stay"

    def restore(self) -> None:
        """Put a fresh copy of BEFORE in place of the target (and the CDC slot)."""
        if self.scenario.sink == "delta":
            shutil.rmtree(self.lake / "target", ignore_errors=True)
            shutil.copytree(self.before_lake, self.lake / "target")
            self.current_db = self.template_db  # unused by a Delta sink's run
            return
        if not self.prepared:
            self.prepared.append(self.maker.submit(self.new_clone))
        self.current_db = self.prepared.pop(0).result()
        self.prepared.append(self.maker.submit(self.new_clone))
        if self.scenario.cdc:
            self.wait_slot_free(self.slot)
            self.admin(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s",
                (self.slot,),
            )
            if not self.scenario.first_load:
                self.copy_slot(self.template_slot, self.slot)

    def new_clone(self) -> str:
        name = f"k_{self.tag}_{uuid.uuid4().hex[:8]}"
        self.create_database(name, template=self.template_db)
        return name

    def release(self) -> None:
        if self.scenario.sink == "postgres" and self.current_db not in (None, self.template_db):
            self.drop_later(self.current_db)
        self.current_db = self.template_db

    # -- judging -------------------------------------------------------------------------------

    def same_data(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        keys = ("rows", "digest", "relations")
        return all(a.get(k) == b.get(k) for k in keys)

    def same_commit(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Delta: the same table version and pipeline run (Postgres targets: always)."""
        return a.get("version") == b.get("version") and a.get("run") == b.get("run")

    def position_after_ok(self, snap: dict[str, Any]) -> bool:
        got, want = snap["position"], self.after["position"]
        if self.scenario.position_rule == "exact":
            return got == want
        before = self.before["position"]
        if got is None or want is None:
            return False
        value = position_number(got[2])
        return (
            [got[0], got[1], got[3], got[4]] == [want[0], want[1], want[3], want[4]]
            and (before is None or value >= position_number(before[2]))
            and (self.position_floor is None or value > self.position_floor)
        )

    def verdict(self, snap: dict[str, Any]) -> str | None:
        """before | after | partial (a committed resume point) | None (anything else).

        Postgres positions also carry `written` (the writing transaction's now()): BEFORE's
        row untouched, or rewritten by this run, so that an equal value (an xmin checkpoint
        held back by a running transaction) still tells whether the run stored it."""
        rewritten = (
            self.scenario.sink == "delta"  # a Delta position is judged by its commit's run
            or snap["position"] is None
            or snap.get("written") != self.before.get("written")
        )
        if (
            self.same_data(snap, self.before)
            and snap["position"] == self.before["position"]
            and snap.get("written") == self.before.get("written")
            and self.same_commit(snap, self.before)
        ):
            return "before"
        if (
            self.same_data(snap, self.after)
            and self.position_after_ok(snap)
            and rewritten
            and self.same_commit(snap, self.after)
        ):
            return "after"
        if self.scenario.partial:
            for state in self.partials:
                if (
                    self.same_data(snap, state)
                    and snap["position"] == state["position"]
                    and rewritten
                ):
                    return "partial"
        return None

    def kill_points(self, limit: int) -> list[int]:
        """Tick numbers to kill at: every structural tick, spread points of the streams; at
        most `limit`, keeping the ticks around commits."""
        labels = self.labels
        if limit <= 4:  # the fast subset: start, mid-stream, around the last commit
            bulk = [
                t for t, label in enumerate(labels, 1) if label in (*BULK_LABELS, "arrow batch")
            ]
            commits = [
                t
                for t, label in enumerate(labels, 1)
                if label.endswith("commit") or label in ("delta write", "delta merge")
            ]
            committed = [t for t, label in enumerate(labels, 1) if label.endswith("committed")]
            picks = [bulk[len(bulk) // 2] if bulk else 2, commits[-1], committed[-1], 1]
            return sorted(set(picks[:limit]))
        points: set[int] = set()
        run: list[int] = []
        for tick, label in enumerate([*labels, ""], start=1):
            if label in BULK_LABELS:
                run.append(tick)
                continue
            if run:
                picks = {0, len(run) // 3, (2 * len(run)) // 3, len(run) - 1}
                points.update(run[i] for i in picks)
                run = []
            if label:
                points.add(tick)
        ordered = sorted(points)
        if len(ordered) <= limit:
            return ordered
        must = [p for p in ordered if any(w in labels[p - 1] for w in COMMIT_WORDS)]
        must = must[-limit:] if len(must) > limit else must
        rest = [p for p in ordered if p not in must]
        room = limit - len(must)
        step = len(rest) / room if room else 0
        chosen = {rest[int(i * step)] for i in range(room)}
        return sorted(chosen | set(must))

    def uncommitted_files(self) -> int:
        """Data files in the Delta folder that BEFORE lacks and no commit references."""
        target = self.lake / "target"
        on_disk = {str(p.relative_to(target)) for p in target.rglob("*.parquet")}
        before = {str(p.relative_to(self.before_lake)) for p in self.before_lake.rglob("*.parquet")}
        referenced: set[str] = set()
        if DeltaTable.is_deltatable(str(target)):
            referenced = set(delta_load.data_files(DeltaTable(str(target))))
        return len(on_disk - before - referenced)

    def timed_delays(self, count: int, rng: random.Random) -> list[float]:
        """Kill times (seconds into the run): alternately anywhere in the load, and within the
        last commit's window (from the tick before the last "committed" tick to that tick:
        the COMMIT round trip, or delta-rs writing its files and its log entry)."""
        last = max(i for i, label in enumerate(self.labels) if label.endswith("committed"))
        window = (self.times[last - 1], self.times[last])
        delays = []
        for i in range(count):
            low, high = (0.0, self.load_seconds) if i % 2 == 0 else window
            delays.append(rng.uniform(low, high))
        return delays

    def kill_once(
        self, point: str, kill_at: int | None, kill_at_seconds: float | None = None
    ) -> KillRecord:
        self.restore()
        try:
            outcome = self.run(kill_at=kill_at, kill_at_seconds=kill_at_seconds)
            name = self.scenario.name
            if outcome.killed:
                point = f"{point} ({outcome.kill_label})"
            elif not outcome.killed:
                # A timed kill after the load ended, or (CDC, whose threads interleave) a run
                # with fewer ticks than the reference: not a kill, but it must have succeeded.
                assert outcome.exitcode == 0, (
                    f"{name}: run failed (exit {outcome.exitcode}): "
                    f"{outcome.record and outcome.record['error']}"
                )
            snap = self.snapshot()
            verdict = self.verdict(snap)
            assert verdict is not None, (
                f"{name}: killed at {point}, the target is neither before nor after:\n"
                f"  got    {snap}\n  before {self.before}\n  after  {self.after}"
            )
            orphans = snap.get("staging", 0)
            if self.scenario.sink == "delta":
                orphans = self.uncommitted_files()  # written by the killed run, in no commit
            elif not (self.scenario.cdc or self.scenario.min_slice_blocks):
                # Only CDC and the parallel exchange commit staging tables outside their apply.
                assert orphans == 0, f"{name}: killed at {point}, staging tables left behind"
            self.run_ok()
            final = self.snapshot()
            # A Delta run always commits (its run counter), so the next run makes a new version:
            # it converged when rows and position are AFTER's, in a newer commit.
            converged = (
                self.same_data(final, self.after)
                and self.position_after_ok(final)
                and final.get("run", 0) >= self.after.get("run", 0)
            )
            assert converged, (
                f"{name}: after the kill at {point} ({verdict}), the next run did not reach "
                f"AFTER:\n  got   {final}\n  after {self.after}"
            )
            if self.scenario.sink == "postgres":
                assert final["staging"] == 0, f"{name}: staging tables left after {point}"
            return KillRecord(point, outcome.killed, verdict, converged, orphans)
        finally:
            self.release()

    def sweep(self, event_points: int, timed_points: int, seed: int = 9) -> Figures:
        started = time.monotonic()
        records: list[KillRecord] = []
        ticks = self.kill_points(event_points)
        for tick in ticks:
            records.append(self.kill_once(f"tick {tick}", tick, None))
        rng = random.Random(f"{seed}:{self.scenario.name}")
        for delay in self.timed_delays(timed_points, rng):
            records.append(self.kill_once(f"timed {delay:.4f}s", None, delay))
        killed = [r for r in records if r.killed]
        return Figures(
            strategy=self.scenario.name,
            points=len(killed),
            before=sum(r.verdict == "before" for r in killed),
            after=sum(r.verdict == "after" for r in killed),
            partial=sum(r.verdict == "partial" for r in killed),
            converged=sum(r.converged for r in killed),
            ticks=len(self.labels),
            not_killed=len(records) - len(killed),
            orphans=sum(r.orphans > 0 for r in killed),
            seconds=time.monotonic() - started,
        )


# Used databases are dropped by one thread per worker process, behind the kills; a sweep
# waits for them before it ends.
_DROPPER = ThreadPoolExecutor(max_workers=1)


def _drop_database(admin_uri: str, name: str) -> None:
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(admin_uri, autocommit=True, application_name=PROBE_APP) as conn,
    ):
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def kill_sweep(scenario: Scenario, cluster: Any, workdir: Path) -> Iterator[KillSweep]:
    sweep = KillSweep(scenario, cluster, workdir)
    try:
        sweep.setup()
        yield sweep
    finally:
        sweep.close()


def report(figures: Figures) -> None:
    """Print the figures line; append it as JSON to $PGFLOW_RELIABILITY_FIGURES if set."""
    print(figures.line())
    path = os.environ.get("PGFLOW_RELIABILITY_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"suite": "kills", **asdict(figures)}) + "\n")


# ---------------------------------------------------------------------------------------------
# The Delta source of the delta_sync scenario
# ---------------------------------------------------------------------------------------------


def _delta_rows(lo: int, hi: int, qty_bump: int = 0) -> pl.DataFrame:
    ids = pl.int_range(lo, hi, eager=True)
    return pl.DataFrame({"id": ids}).with_columns(
        region=pl.format("r{}", pl.col("id") % 4),
        qty=(pl.col("id") % 97 + qty_bump).cast(pl.Int64),
        note=pl.when(pl.col("id") % 11 == 0).then(None).otherwise(pl.format("note {}", "id")),
    )


def write_delta_source(path: Path) -> None:
    """4,000 rows in 4 data files."""
    for lo in range(1, 4001, 1000):
        write_deltalake(str(path), _delta_rows(lo, lo + 1000), mode="append")


def change_delta_source(path: Path) -> None:
    """Updates, inserts and deletes in two new versions: the sync pins the latest."""
    table = DeltaTable(str(path))
    changes = pl.concat(
        [_delta_rows(1, 4001, 1000).filter(pl.col("id") % 10 == 3), _delta_rows(4001, 4301)]
    )
    (
        table.merge(changes, "t.id = s.id", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    DeltaTable(str(path)).delete("id % 50 = 7")

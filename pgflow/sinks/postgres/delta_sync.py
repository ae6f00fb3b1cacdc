"""Sync a Delta Lake table into a Postgres table: upsert on a key, skip unchanged rows.

    result = sync_delta(uri_or_connect, "s3://lake/orders", TableName("gold", "orders"),
                        ("id",), pipeline="orders_gold", deletes="key_pass")

One run syncs ONE Delta version, the latest when it starts (pinned: later commits wait for
the next run):

1. Lock. A session advisory lock on the target (the key `ddl.lock_target` uses), held by the
   run's connection until it ends, so runs of one target (and loads of it) never interleave.
   The Delta version is read after the lock: a run never applies an older version than one
   applied before it.
2. Staleness, by version only. The position stored for the target in
   `_pgflow.pipeline_state` holds the Delta version synced and whether that sync finished.
   The same version, finished, and the target still there: skipped, nothing written. No clocks
   are compared (commit timestamps and `max(sync_ldts)` are not comparable across machines).
3. Plan. What the pass reads, in a fixed order (data files sorted by path):
   - first sync, a missing target, columns added, `full_pass=True`, or an interrupted sync of
     another version: every file of the version;
   - a finished sync of an older version `b`: only the files of the version that `b` did not
     have. Delta data files are immutable and a row that changes moves to a new file
     (copy-on-write), so the files both versions share hold rows the target already has;
     compaction re-adds rows in new files, which the upsert then finds unchanged;
   - an interrupted sync of the same version: the same plan, from the stored file and row.
4. Stream. Each file is read in batches of DELTA_CLIENT_BATCH_SIZE rows (polars), re-cut into
   batches of POSTGRES_CLIENT_BATCH_SIZE rows; each of those is ONE sink transaction:
   COPY (text format) into a temporary staging table -> upsert into the target -> store the
   position (version, next file, next row, finished=false) -> COMMIT.
5. Finish. One last transaction applies the deletes (see below), stores finished=true and
   ANALYZEs the target when the run changed a large share of it.

Upsert: `INSERT ... ON CONFLICT (key) DO UPDATE SET ... WHERE target.hdiff IS DISTINCT FROM
EXCLUDED.hdiff`, after filtering out staged rows whose key and hash the target already has:
a row whose non-key values are unchanged is not written, nor even locked (no new tuple, no
dirtied page, no WAL; `sync_ldts` kept). `RETURNING xmax = 0` tells inserted rows from
updated ones. While the target was empty when the run began, batches are plain INSERTs (no
speculative insertion), falling back to the upsert at the first key already present.
`full_pass=True` compares with a hash recomputed from the target row's values instead of its
stored hdiff, so it also repairs rows edited in the target.

hdiff: `md5(convert_to(ROW(non-key columns in Delta schema order)::text, 'UTF8'))`, computed
by Postgres from the staged, typed values, with the session pinned to TimeZone=UTC,
DateStyle=ISO, IntervalStyle=postgres, extra_float_digits=3, bytea_output=hex. Stable across
runs, machines, client time zones and databases because it hashes the text of typed values in
fixed settings: a timestamptz is the same instant whatever time zone wrote or reads it and
renders in UTC; numeric(p,s) renders with its scale (1.50 stays 1.50); floats render
shortest-exact; jsonb renders canonically (keys sorted, whitespace normalised); a NULL
renders as nothing and an empty string as "", so they differ; columns come in a fixed order;
the hash is of UTF-8 bytes whatever the database encoding. It changes when the column set
changes (a column added), which is why that forces a full pass.

Resume and exactly-once: a batch's rows and the position after them (version, plan, next
file, next row, finished=false) commit in ONE transaction in the sink, the position in
`_pgflow.pipeline_state` next to the rows it covers. So the stored position never claims rows
the target lacks, and never lags behind rows it has: a crash before COMMIT loses both, one
after keeps both. The next attempt (a retry in this run, or the next run) re-reads the
position and continues from its file and row when it is the same version and plan. This is
exact because a version's data files and the rows in each are immutable and read in a fixed
order (files sorted by path, rows in file order), so "file i, row r" names the same rows on
every attempt. And should a row be applied twice anyway (the commit went through but its
acknowledgement was lost, or the plan restarted after the version changed), the upsert is
idempotent: the row finds an equal hdiff and is left alone. A restarted pass therefore
converges to the same target. Each position also records the run that wrote it, so a retry
tells its own progress from another run's. Batch commits use synchronous_commit=off: a
server crash can lose only the latest whole batches together with their position, which the
next attempt redoes; the final commit (finished=true) is durable.

Retries (sync_settings): a transient sink error drops the connection, waits (exponential
backoff, full jitter), reconnects, re-takes the lock and continues from the stored position;
a transient Delta read error waits and re-reads from the stored position. Should the stored
position have been changed by another run meanwhile, the run stops with ConcurrentSync.

Deletes:
- "none": rows whose key left the Delta table stay in the target;
- "key_pass": the last transaction stages every key of the version (key columns only) and
  deletes target rows whose key is not among them;
- "cdf": the table must have delta.enableChangeDataFeed=true; the last transaction deletes the
  keys the change data feed deletes, for good, between the last finished version and this one
  (a key deleted and re-inserted stays). When the feed cannot be read for that range, the run
  falls back to key_pass and says so in the result.

Staging is a TEMPORARY table (ON COMMIT DELETE ROWS) per connection, not an UNLOGGED table:
like UNLOGGED it writes no WAL, and in addition the server drops it when the connection ends,
so a killed run leaves nothing behind, and each commit empties it without a TRUNCATE.

Not supported: Delta tables with column mapping or with deletion vectors on any file
(refused with a clear error, see pgflow.sources.delta); keys repeated within one sink batch
(DuplicateKeyError; a key repeated across batches ends with the last row read); NULL keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import polars as pl
import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres import ddl, delta_sync_target, state
from pgflow.sinks.postgres.delta_types import (
    TEXT,
    copy_text,
    plain_column,
    postgres_column,
    table_info,
)
from pgflow.sinks.postgres.prefetch import prefetched
from pgflow.sinks.postgres.sql_log import MAX_LOGGED_STATEMENTS, SqlLog
from pgflow.sinks.postgres.statistics import worth_analyzing
from pgflow.sinks.postgres.sync_settings import (
    SyncSettings,
    backoff_seconds,
    transient_delta,
    transient_postgres,
)
from pgflow.sources import delta
from pgflow.sources.base import Position
from pgflow.sources.catalog import Column, describe_table, table_exists
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS

log = logging.getLogger(__name__)

Deletes = Literal["none", "cdf", "key_pass"]
PlanMode = Literal["skip", "full", "new_files", "resume"]
Connect = Callable[[], psycopg.Connection]
T = TypeVar("T")

HDIFF = "hdiff"
SYNC_LDTS = "sync_ldts"
STAGED_HDIFF = "_pgflow_hdiff"  # the staged row's hash inside the upsert
POSITION_KIND = "delta"
POSITION_TYPE = "delta_sync_v1"
STAGE = sql.Identifier("pg_temp", "pgflow_delta_stage")
KEYS = sql.Identifier("pg_temp", "pgflow_delta_keys")
MAX_IDENTIFIER_BYTES = 63
TIMESTAMPTZ_OID = 1184
# Sink batches read and rendered ahead of the one being applied.
PREFETCH_BATCHES = 2


class DeltaSyncError(RuntimeError):
    """The sync cannot go on; the message says why and what to do."""


class DuplicateKeyError(DeltaSyncError):
    """A sink batch holds one key twice: the Delta table repeats a key."""


class ConcurrentSync(DeltaSyncError):
    """Another run changed the target's stored position while this one was retrying."""


@dataclass(frozen=True)
class SyncState:
    """The position stored for a target: how far the sync of which Delta version got."""

    version: int  # the Delta version this pass syncs (or synced)
    finished: bool
    synced: int | None  # the last version whose sync finished (the target holds all of it)
    base: int | None  # the pass reads the files `base` lacked; None: every file
    planned: int  # files in the pass
    next_file: int  # index in the pass's file list of the first file not fully applied
    next_row: int  # rows of that file already applied
    run: str = ""  # the run that wrote it: a retry tells its own progress from another run's
    table_id: str = ""  # the Delta table's id ("": stored by a pgflow that did not record it)

    def position(self, source: str) -> Position:
        value = {
            "run": self.run,
            "table_id": self.table_id,
            "version": self.version,
            "finished": self.finished,
            "synced": self.synced,
            "base": self.base,
            "planned": self.planned,
            "next_file": self.next_file,
            "next_row": self.next_row,
        }
        return Position(POSITION_KIND, source, json.dumps(value, sort_keys=True), POSITION_TYPE)

    @classmethod
    def from_position(cls, position: Position | None, source: str) -> SyncState | None:
        """The stored state, or None when nothing (or something else) is stored."""
        if position is None or position.kind != POSITION_KIND:
            return None
        if position.source != source or position.value_type != POSITION_TYPE:
            return None
        try:
            value = json.loads(position.value)
            return cls(
                version=int(value["version"]),
                finished=bool(value["finished"]),
                synced=None if value["synced"] is None else int(value["synced"]),
                base=None if value["base"] is None else int(value["base"]),
                planned=int(value["planned"]),
                next_file=int(value["next_file"]),
                next_row=int(value["next_row"]),
                run=str(value.get("run", "")),
                table_id=str(value.get("table_id", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class _Plan:
    mode: PlanMode
    reason: str
    version: int
    base: int | None
    files: tuple[delta.DeltaFile, ...]
    start_file: int
    start_row: int
    synced: int | None


@dataclass(frozen=True)
class SyncResult:
    target: TableName
    table_uri: str
    version: int  # the Delta version synced (or found already synced)
    skipped: bool
    plan: PlanMode
    reason: str  # why skipped, or why the pass reads what it reads
    base_version: int | None  # new_files passes: the version whose files were skipped
    files_total: int  # data files in the version
    files_planned: int  # files the pass reads
    files_synced: int  # files this run applied (fully, or the rest of a resumed file)
    resumed_from_file: int | None  # resume: index (in the pass) of the first file read
    resumed_from_row: int | None
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_deleted: int
    deletes: str  # how deletes were applied ("none", "key_pass", "cdf", or the fallback)
    created_target: bool
    columns_added: tuple[str, ...]
    retries: int
    seconds: float
    statements: list[str] = field(default_factory=list)
    position: Position | None = None
    position_reset: str | None = None  # why the stored position was discarded (position_owner)

    @property
    def rows_written(self) -> int:
        return self.rows_inserted + self.rows_updated + self.rows_deleted


def sync_delta(
    connect: str | Connect,
    path: str,
    target: TableName,
    key: Sequence[str],
    *,
    pipeline: str,
    settings: SyncSettings | None = None,
    storage_options: dict[str, str] | None = None,
    deletes: Deletes = "none",
    full_pass: bool = False,
    fillfactor: int | None = None,
) -> SyncResult:
    """Sync the latest version of the Delta table at `path` into `target`, upserting on `key`.

    `connect` is a connection URI or a factory of new connections (called again to reconnect
    after a connection is lost; each connection is closed by the sync). `full_pass` reads
    every file of the version whatever is stored, even when the version is already synced
    (a repair: rows edited or deleted by hand in the target are rewritten). `fillfactor` is
    the spec's, set on the target; without it a target the sync creates gets
    ddl.UPSERT_FILLFACTOR (the sync upserts). Raises on a non-transient error or when retries
    run out; the stored position then lets the next run resume.
    """
    if deletes not in ("none", "cdf", "key_pass"):
        raise ValueError(f"deletes must be 'none', 'cdf' or 'key_pass', got {deletes!r}")
    if not key:
        raise ValueError("key: name the Delta column(s) that identify a row")
    settings = settings or SyncSettings.from_env()
    if isinstance(connect, str):
        connect = _uri_connect(connect, settings)
    run = _Run(
        connect, path, target, tuple(key), pipeline, settings, storage_options, deletes, fillfactor
    )
    try:
        return run.execute(full_pass)
    except BaseException:
        run.close()  # and its session lock: the drop takes it again
        if run.created:
            delta_sync_target.drop_failed_first_sync(connect, target)
        raise
    finally:
        run.close()


def _uri_connect(uri: str, settings: SyncSettings) -> Connect:
    timeout = max(1, round(settings.postgres_connect_timeout))
    return lambda: psycopg.connect(uri, autocommit=True, connect_timeout=timeout)


def apply_batch(
    log: SqlLog,
    target: TableName,
    columns: Sequence[str],
    key: Sequence[str],
    data: bytes,
    insert_only: bool = False,
    verify: bool = False,
) -> tuple[int, int, bool]:
    """COPY one batch into staging and apply it to `target`: (inserted, updated, insert_only).

    Runs inside the caller's transaction; staging empties itself at COMMIT. `insert_only`
    (the target was empty when the run began) tries a plain INSERT first, which skips the
    cost of ON CONFLICT's speculative insertion; should a key already be there, that INSERT
    is rolled back to a savepoint and the batch upserted, and the run upserts from then on.
    `verify` compares the new hdiff with one recomputed from the target row's values rather
    than the stored hdiff, so rows edited in the target are rewritten too.
    """
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(STAGE, _names(columns))
    log.record(copy)
    with log.conn.cursor() as cur, cur.copy(copy) as writer:
        writer.write(data)
    if insert_only:
        try:
            with log.conn.transaction():
                return log.execute(_insert_sql(target, columns, key)).rowcount, 0, True
        except psycopg.errors.UniqueViolation:
            pass
    row = log.execute(_upsert_sql(target, columns, key, verify)).fetchone()
    assert row is not None
    return row[0], row[1], False


def hdiff_sql(columns: Sequence[str], key: Sequence[str], alias: str) -> sql.Composable:
    """The hash of the non-key `columns` of row `alias` (see the module docstring)."""
    values = sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns if c not in key)
    return sql.SQL("md5(convert_to(ROW({})::text, 'UTF8'))").format(values)


def _insert_sql(target: TableName, columns: Sequence[str], key: Sequence[str]) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {target} ({columns}, {hdiff}, {ldts}) SELECT {staged}, {hash}, now()"
        " FROM {stage} s"
    ).format(
        target=target.identifier(),
        columns=_names(columns),
        hdiff=sql.Identifier(HDIFF),
        ldts=sql.Identifier(SYNC_LDTS),
        staged=sql.SQL(", ").join(sql.Identifier("s", c) for c in columns),
        hash=hdiff_sql(columns, key, "s"),
        stage=STAGE,
    )


def _upsert_sql(
    target: TableName, columns: Sequence[str], key: Sequence[str], verify: bool = False
) -> sql.Composed:
    """The upsert of staging into `target`, counting inserted and updated rows.

    Staged rows whose key and hash the target already has are filtered out before the
    INSERT (an index probe each): ON CONFLICT would lock each such row, dirtying its page and
    writing WAL, to then do nothing. The ON CONFLICT ... WHERE still guards the rows that
    pass the filter, so a row changed concurrently is never overwritten with equal values.
    """
    updates = [
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
        for c in (*[c for c in columns if c not in key], HDIFF, SYNC_LDTS)
    ]
    same_key = sql.SQL(" AND ").join(
        sql.SQL("x.{c} = s.{c}").format(c=sql.Identifier(c)) for c in key
    )
    return sql.SQL(
        "WITH changed AS (INSERT INTO {target} AS t ({columns}, {hdiff}, {ldts})"
        " SELECT {staged}, s.{new}, now() FROM (SELECT s.*, {hash} AS {new} FROM {stage} s) s"
        " WHERE NOT EXISTS (SELECT FROM {target} x WHERE {same_key} AND {existing} = s.{new})"
        " ON CONFLICT ({key}) DO UPDATE SET {updates}"
        " WHERE {current} IS DISTINCT FROM EXCLUDED.{hdiff}"
        " RETURNING t.xmax = 0 AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)"
        " FROM changed"
    ).format(
        target=target.identifier(),
        columns=_names(columns),
        hdiff=sql.Identifier(HDIFF),
        ldts=sql.Identifier(SYNC_LDTS),
        staged=sql.SQL(", ").join(sql.Identifier("s", c) for c in columns),
        new=sql.Identifier(STAGED_HDIFF),
        hash=hdiff_sql(columns, key, "s"),
        stage=STAGE,
        same_key=same_key,
        existing=hdiff_sql(columns, key, "x") if verify else sql.Identifier("x", HDIFF),
        key=_names(key),
        updates=sql.SQL(", ").join(updates),
        current=hdiff_sql(columns, key, "t") if verify else sql.Identifier("t", HDIFF),
    )


def _names(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


class _Log(SqlLog):
    """A SqlLog that keeps each distinct statement once: batches repeat the same SQL."""

    def __init__(self, conn: psycopg.Connection, statements: list[str]):
        super().__init__(conn)
        self.statements = statements

    def record(self, query: sql.Composable | str) -> None:
        text = query if isinstance(query, str) else query.as_string(self.conn)
        if text not in self.statements and len(self.statements) < MAX_LOGGED_STATEMENTS:
            self.statements.append(text)


@dataclass
class _Counts:
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


class _Run:
    def __init__(
        self,
        connect: Connect,
        path: str,
        target: TableName,
        key: tuple[str, ...],
        pipeline: str,
        settings: SyncSettings,
        storage_options: dict[str, str] | None,
        deletes: Deletes,
        fillfactor: int | None,
    ):
        self.connect = connect
        self.path = path
        self.target = target
        self.key = key
        self.pipeline = pipeline
        self.settings = settings
        self.storage_options = storage_options
        self.deletes = deletes
        self.fillfactor = fillfactor
        self.statements: list[str] = []
        self.conn: psycopg.Connection | None = None
        self.log: _Log | None = None
        self.staged = False
        self.counts = _Counts()
        self.retries = 0
        self.postgres_failures = 0
        self.delta_failures = 0
        self.started = time.monotonic()
        self.run_id = uuid.uuid4().hex
        # Set by prepare():
        self.snapshot: delta.DeltaSnapshot
        self.initial: SyncState | None = None
        self.created = False
        self.position_reset: str | None = None
        self.columns_added: tuple[str, ...] = ()
        self.estimated_rows: int | None = None
        self.deletes_applied = deletes
        self.insert_only = False
        self.verify = False

    # -- connection ------------------------------------------------------------------------

    def connection(self) -> _Log:
        if self.conn is None or self.conn.closed:
            conn = self.connect()
            conn.autocommit = True
            settings = [("client_encoding", "UTF8"), *PORTABLE_TEXT_SETTINGS.items()]
            for name, value in settings:
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            self.conn = conn
            self.log = _Log(conn, self.statements)
            self.staged = False
            self.log.execute(
                sql.SQL("SELECT pg_advisory_lock(hashtextextended({}, 0))").format(
                    sql.Literal(f"pgflow:{self.target}")
                )
            )
        assert self.log is not None
        return self.log

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
        self.log = None

    def retrying(self, step: Callable[[], T]) -> T:
        while True:
            try:
                return step()
            except Exception as error:
                if transient_postgres(error):
                    self.postgres_failures += 1
                    failures, limit = self.postgres_failures, self.settings.postgres_max_retries
                    delay = self.settings.postgres_retry_delay
                    self.close()  # a broken connection is not reused; the lock went with it
                elif transient_delta(error):
                    self.delta_failures += 1
                    failures, limit = self.delta_failures, self.settings.delta_max_retries
                    delay = self.settings.delta_retry_delay
                else:
                    raise
                if failures > limit:
                    raise
                wait = backoff_seconds(failures, delay)
                self.retries += 1
                log.warning(
                    "sync of %s into %s: %s (attempt %d of %d), retrying in %.1f s",
                    self.path,
                    self.target,
                    error,
                    failures,
                    limit,
                    wait,
                )
                time.sleep(wait)

    def progressed(self) -> None:
        self.postgres_failures = self.delta_failures = 0

    # -- the run ---------------------------------------------------------------------------

    def execute(self, full_pass: bool) -> SyncResult:
        plan = self.retrying(lambda: self.prepare(full_pass))
        if isinstance(plan, SyncResult):
            log.info("sync of %s into %s: %s", self.path, self.target, plan.reason)
            return plan
        log.info(
            "sync of %s version %d into %s: %s", self.path, plan.version, self.target, plan.reason
        )
        result = self.retrying(lambda: self.stream(plan))
        log.info(
            "sync of %s version %d into %s done in %.1f s: %d rows read, %d inserted, "
            "%d updated, %d unchanged, %d deleted, %d retries",
            self.path,
            result.version,
            self.target,
            result.seconds,
            result.rows_read,
            result.rows_inserted,
            result.rows_updated,
            result.rows_unchanged,
            result.rows_deleted,
            result.retries,
        )
        return result

    def prepare(self, full_pass: bool) -> _Plan | SyncResult:
        self.verify = full_pass
        log_ = self.connection()
        snapshot = delta.open_snapshot(self.path, storage_options=self.storage_options)
        self.snapshot = snapshot
        self.check_columns()
        if self.deletes == "cdf" and not snapshot.change_data_feed:
            raise DeltaSyncError(
                f"deletes='cdf' needs the change data feed: Delta table {snapshot.table_uri} "
                f"does not set delta.enableChangeDataFeed=true. Enable it, or use "
                f"deletes='key_pass'"
            )
        stored, reset = delta_sync_target.claim_position(log_, self.target, self.pipeline)
        self.position_reset = self.position_reset or reset
        self.initial = self.same_table(log_, SyncState.from_position(stored, snapshot.table_uri))
        exists = table_exists(log_.conn, self.target)
        initial = self.initial
        if (
            exists
            and not full_pass
            and initial
            and initial.finished
            and initial.version == snapshot.version
        ):
            return self.skipped(stored)
        with log_.conn.transaction():
            added: tuple[str, ...] = ()
            if exists:
                added = self.reconcile_target()
                ddl.ensure_fillfactor(log_, self.target, self.fillfactor)
            else:
                fillfactor = self.fillfactor or ddl.UPSERT_FILLFACTOR
                ddl.create_target(log_, self.target_info(), self.target, self.key, fillfactor)
            self.estimated_rows = _estimated_rows(log_.conn, self.target)
            self.insert_only = _is_empty(log_.conn, self.target)
        if exists:
            self.columns_added = added
        else:
            self.created = True  # stays True should a retry find the target this run created
        return self.plan(full_pass or bool(self.columns_added), exists)

    def same_table(self, log_: _Log, stored: SyncState | None) -> SyncState | None:
        """`stored`, unless it describes another Delta table once at this path (then it is
        forgotten): a re-created table's versions restart, so its numbers would claim rows
        the target never got. Its rows stay; the full pass's deletes (key_pass) remove theirs."""
        if stored is None or stored.table_id in ("", self.snapshot.table_id):
            return stored
        delta_sync_target.forget_position(log_, self.target, self.pipeline, empty=False)
        self.position_reset = self.position_reset or delta_sync_target.SOURCE_REPLACED
        log.warning("sync into %s: %s", self.target, delta_sync_target.SOURCE_REPLACED)
        return None

    def skipped(self, stored: Position | None) -> SyncResult:
        snapshot = self.snapshot
        return self.result(
            plan=None,
            mode="skip",
            reason=f"Delta version {snapshot.version} is already synced",
            files_synced=0,
            position=stored,
        )

    def plan(self, full_pass: bool, existed: bool) -> _Plan:
        snapshot, stored = self.snapshot, self.initial
        version = snapshot.version
        synced = stored.synced if stored else None

        def full(reason: str) -> _Plan:
            return _Plan("full", reason, version, None, snapshot.files, 0, 0, synced)

        if stored is None and self.position_reset == delta_sync_target.SOURCE_REPLACED:
            return full(f"{delta_sync_target.SOURCE_REPLACED}: every file")
        if stored is None:
            return full("first sync of this Delta table into the target: every file")
        if not existed:
            return full("the target did not exist: every file")
        if full_pass:
            reason = "columns were added" if self.columns_added else "a full pass was asked for"
            return full(f"{reason}: every file")
        if not stored.finished:
            if stored.version != version:
                return full(
                    f"the interrupted sync was of version {stored.version}; version {version} "
                    f"starts over: every file"
                )
            files = self.files_since(stored.base)
            if files is not None and len(files) == stored.planned:
                mode: PlanMode = "resume"
                where = f"file {stored.next_file + 1} of {stored.planned}, row {stored.next_row}"
                return _Plan(
                    mode,
                    f"resuming the interrupted sync of version {version} at {where}",
                    version,
                    stored.base,
                    files,
                    stored.next_file,
                    stored.next_row,
                    synced,
                )
            return full(f"the interrupted sync of version {version} cannot be resumed: every file")
        if stored.version > version:
            return full(
                f"the synced version {stored.version} is newer than the table's {version} "
                f"(table re-created?): every file"
            )
        files = self.files_since(stored.version)
        if files is None:
            return full(f"version {stored.version}'s file list is gone from the log: every file")
        return _Plan(
            "new_files",
            f"{len(files)} of {len(snapshot.files)} files are new since version {stored.version}",
            version,
            stored.version,
            files,
            0,
            0,
            synced,
        )

    def files_since(self, base: int | None) -> tuple[delta.DeltaFile, ...] | None:
        if base is None:
            return self.snapshot.files
        try:
            old = delta.file_paths(self.path, base, self.storage_options)
        except Exception as error:
            if transient_delta(error):
                raise
            return None
        return tuple(f for f in self.snapshot.files if f.path not in old)

    # -- target ----------------------------------------------------------------------------

    def check_columns(self) -> None:
        snapshot = self.snapshot
        missing = [k for k in self.key if snapshot.column(k) is None]
        if missing:
            raise DeltaSyncError(
                f"key column(s) {', '.join(missing)} are not in Delta table "
                f"{snapshot.table_uri}; its columns are {', '.join(snapshot.column_names)}"
            )
        for name in (HDIFF, SYNC_LDTS, STAGED_HDIFF):
            if snapshot.column(name) is not None:
                raise DeltaSyncError(
                    f"Delta table {snapshot.table_uri} has a column {name}, which the sync "
                    f"adds to the target itself; rename it in the Delta table"
                )
        for name in snapshot.column_names:
            if len(name.encode()) > MAX_IDENTIFIER_BYTES:
                raise DeltaSyncError(
                    f"Delta column {name!r} is longer than Postgres' {MAX_IDENTIFIER_BYTES}-byte "
                    f"identifier limit; rename it in the Delta table"
                )

    def delta_columns(self) -> list[Column]:
        return [
            postgres_column(c.name, c.dtype, not c.nullable or c.name in self.key, c.pg_type)
            for c in self.snapshot.columns
        ]

    def target_info(self):
        columns = [
            *self.delta_columns(),
            plain_column(HDIFF, TEXT.sql, TEXT.oid, True),
            plain_column(SYNC_LDTS, "timestamp with time zone", TIMESTAMPTZ_OID, True),
        ]
        return table_info(self.target, columns, self.key)

    def reconcile_target(self) -> tuple[str, ...]:
        """Check an existing target fits; add Delta columns it lacks. Returns those added."""
        log_ = self.log
        assert log_ is not None
        current = describe_table(log_.conn, self.target)
        where = f"target {self.target}"
        if set(current.primary_key) != set(self.key):
            raise ddl.TargetSchemaError(
                f"{where} has primary key ({', '.join(current.primary_key) or 'none'}), the sync "
                f"upserts on ({', '.join(self.key)}); make them the same"
            )
        for name in (HDIFF, SYNC_LDTS):
            if current.column(name) is None:
                raise ddl.TargetSchemaError(
                    f"{where} lacks the column {name} the sync maintains; it was not created by "
                    f"the sync: drop it (the next run re-creates it) or add the column"
                )
        added = []
        wanted = {c.name for c in self.snapshot.columns}
        for column in self.delta_columns():
            existing = current.column(column.name)
            if existing is None:
                log_.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        self.target.identifier(),
                        sql.Identifier(column.name),
                        sql.SQL(column.type_sql),
                    )
                )
                added.append(column.name)
            elif existing.base_type_sql != column.type_sql:
                raise ddl.TargetSchemaError(
                    f"{where} column {column.name} is {existing.base_type_sql}, the Delta table's "
                    f"type maps to {column.type_sql}; alter the column or drop the target "
                    f"(the next run re-creates it)"
                )
        for column in current.columns:
            extra = column.name not in wanted and column.name not in (HDIFF, SYNC_LDTS)
            if extra and column.not_null and not column.has_default:
                raise ddl.TargetSchemaError(
                    f"{where} column {column.name} is NOT NULL but not in the Delta table, so "
                    f"new rows cannot fill it; drop the column or its NOT NULL"
                )
        return tuple(added)

    # -- streaming -------------------------------------------------------------------------

    def stream(self, plan: _Plan) -> SyncResult:
        log_ = self.connection()
        stored = SyncState.from_position(
            state.read_position(log_.conn, self.target), self.snapshot.table_uri
        )
        if stored is not None and stored.run == self.run_id:  # this run's own progress
            if stored.finished:
                return self.finished(plan, stored)
            start_file, start_row = stored.next_file, stored.next_row
        elif stored == self.initial:  # nothing committed since the plan was made
            start_file, start_row = plan.start_file, plan.start_row
        else:
            raise ConcurrentSync(
                f"the position stored for {self.target} changed while this run was retrying "
                f"(another run synced it?); this run stops, run again to continue"
            )
        self.ensure_stage()
        batches = prefetched(self.rendered(plan, start_file, start_row), PREFETCH_BATCHES)
        with contextlib.closing(batches):  # on failure the reader thread stops now
            for frame, data, next_file, next_row in batches:
                self.apply(plan, frame, data, next_file, next_row)
        return self.finish(plan)

    def apply(
        self, plan: _Plan, frame: pl.DataFrame, data: bytes, next_file: int, next_row: int
    ) -> None:
        """One sink transaction: the batch's rows and the position after them."""
        log_ = self.connection()
        after = SyncState(plan.version, False, plan.synced, plan.base, len(plan.files),
                          next_file, next_row, self.run_id, self.snapshot.table_id)  # fmt: skip
        conn = log_.conn
        with conn.transaction():
            # Durable enough: a crash loses this batch and its position together.
            conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
            try:
                inserted, updated, self.insert_only = apply_batch(
                    log_, self.target, self.snapshot.column_names, self.key, data,
                    self.insert_only, self.verify,
                )  # fmt: skip
            except psycopg.errors.CardinalityViolation:
                raise self.duplicate_error(frame) from None
            self.write_state(log_, after)
        self.counts.rows_read += frame.height
        self.counts.inserted += inserted
        self.counts.updated += updated
        self.progressed()

    def rendered(
        self, plan: _Plan, start_file: int, start_row: int
    ) -> Iterator[tuple[pl.DataFrame, bytes, int, int]]:
        """batches() with each batch's keys checked and its COPY text rendered."""
        for frame, next_file, next_row in self.batches(plan, start_file, start_row):
            self.check_keys(frame)
            yield frame, copy_text(frame), next_file, next_row

    def ensure_stage(self) -> None:
        log_ = self.connection()
        if self.staged:
            return
        log_.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(STAGE))
        log_.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA"
            ).format(
                STAGE,
                _names(self.snapshot.column_names),
                self.target.identifier(),
            )
        )
        self.staged = True

    def batches(
        self, plan: _Plan, start_file: int, start_row: int
    ) -> Iterator[tuple[pl.DataFrame, int, int]]:
        """Sink batches from (start_file, start_row) on, each with the position after it.

        A batch may span files; the position after it is (file, row) of the next row to apply,
        (file + 1, 0) when it ends a file.
        """
        size = self.settings.postgres_batch_size
        pending: list[pl.DataFrame] = []
        pending_rows = 0
        for index in range(start_file, len(plan.files)):
            row = start_row if index == start_file else 0
            for chunk, last in self.file_chunks(plan.files[index], row):
                taken = 0
                while taken < chunk.height:
                    piece = chunk.slice(taken, size - pending_rows)
                    taken += piece.height
                    row += piece.height
                    pending.append(piece)
                    pending_rows += piece.height
                    if pending_rows == size:
                        if last and taken == chunk.height:
                            yield _concat(pending), index + 1, 0
                        else:
                            yield _concat(pending), index, row
                        pending, pending_rows = [], 0
        if pending:
            yield _concat(pending), len(plan.files), 0

    def file_chunks(
        self, file: delta.DeltaFile, offset: int
    ) -> Iterator[tuple[pl.DataFrame, bool]]:
        """The file's Delta batches from row `offset`, each flagged True when it is the last.

        The file's row count says which batch is the last: reading the next batch ahead to
        find out would hold two batches in memory."""
        rows = delta.file_rows(self.snapshot, file)
        row = offset
        for chunk in delta.read_batches(
            self.snapshot, file, self.settings.delta_batch_size, offset=offset
        ):
            row += chunk.height
            yield chunk, row >= rows

    def check_keys(self, frame: pl.DataFrame) -> None:
        nulls = frame.select(pl.any_horizontal(pl.col(k).is_null() for k in self.key).sum()).item()
        if nulls:
            raise DeltaSyncError(
                f"{nulls} row(s) of Delta table {self.snapshot.table_uri} have a NULL in the key "
                f"({', '.join(self.key)}); a key must identify a row"
            )

    def duplicate_error(self, frame: pl.DataFrame) -> DuplicateKeyError:
        repeated = (
            frame.group_by(list(self.key)).len().filter(pl.col("len") > 1).head(5).iter_rows()
        )
        sample = ", ".join(f"{row[:-1]} x{row[-1]}" for row in repeated)
        return DuplicateKeyError(
            f"Delta table {self.snapshot.table_uri} repeats the key ({', '.join(self.key)}) "
            f"within one batch, e.g. {sample}: the sync cannot tell which row is current. "
            f"Deduplicate the Delta table"
        )

    def write_state(self, log_: _Log, after: SyncState) -> None:
        state.write_position(
            log_, self.target, self.pipeline, after.position(self.snapshot.table_uri)
        )

    # -- finish ----------------------------------------------------------------------------

    def finish(self, plan: _Plan) -> SyncResult:
        log_ = self.connection()
        how = self.deletes
        gone = None
        if how == "cdf":
            gone, how = self.cdf_deletes(plan)
        done = SyncState(plan.version, True, plan.version, plan.base, len(plan.files),
                         len(plan.files), 0, self.run_id, self.snapshot.table_id)  # fmt: skip
        conn = log_.conn
        with conn.transaction():
            deleted = 0
            if how.startswith("key_pass"):
                deleted = self.delete_missing_keys(log_)
            elif gone is not None and gone.height:
                deleted = self.delete_keys(log_, gone)
            self.write_state(log_, done)
            changed = self.counts.inserted + self.counts.updated + deleted
            estimated = self.estimated_rows
            if self.created or worth_analyzing(changed, estimated):
                log_.execute(sql.SQL("ANALYZE {}").format(self.target.identifier()))
        self.counts.deleted += deleted
        self.deletes_applied = how
        self.progressed()
        return self.finished(plan, done)

    def cdf_deletes(self, plan: _Plan) -> tuple[pl.DataFrame | None, str]:
        if self.created and plan.mode == "full":
            return None, "cdf (first sync: nothing to delete)"
        if plan.synced is None:
            # No finished sync: the target may hold rows the feed never saw (an interrupted
            # first sync of a re-created Delta table, a target that existed before).
            return None, "key_pass (no finished sync to read the change data feed from)"
        start = plan.synced + 1
        if start > plan.version:
            return None, "cdf"
        try:
            gone = delta.deleted_keys(
                self.path, self.key, start, plan.version, self.storage_options
            )
        except Exception as error:
            if transient_delta(error):
                raise
            log.warning("change data feed of %s unreadable, using key_pass: %s", self.path, error)
            return (
                None,
                f"key_pass (the change data feed of versions {start}..{plan.version} is unreadable: {error})",
            )
        return gone, "cdf"

    def delete_keys(self, log_: _Log, keys: pl.DataFrame) -> int:
        self.create_keys_table(log_)
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(KEYS, _names(self.key))
        log_.record(copy)
        with log_.conn.cursor() as cur, cur.copy(copy) as writer:
            writer.write(copy_text(keys.select(self.key)))
        return self.delete_matching(log_, present=True)

    def delete_missing_keys(self, log_: _Log) -> int:
        """Stage every key of the version (key columns only) and delete the target's others."""
        self.create_keys_table(log_)
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(KEYS, _names(self.key))
        log_.record(copy)
        with log_.conn.cursor() as cur, cur.copy(copy) as writer:
            for file in self.snapshot.files:
                for chunk in delta.read_batches(
                    self.snapshot, file, self.settings.delta_batch_size, columns=self.key
                ):
                    writer.write(copy_text(chunk))
        log_.execute(sql.SQL("ANALYZE {}").format(KEYS))
        return self.delete_matching(log_, present=False)

    def create_keys_table(self, log_: _Log) -> None:
        log_.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(KEYS))
        log_.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
            ).format(KEYS, _names(self.key), self.target.identifier())
        )

    def delete_matching(self, log_: _Log, present: bool) -> int:
        match = sql.SQL(" AND ").join(
            sql.SQL("k.{c} = t.{c}").format(c=sql.Identifier(c)) for c in self.key
        )
        test = sql.SQL("EXISTS") if present else sql.SQL("NOT EXISTS")
        query = sql.SQL("DELETE FROM {} t WHERE {} (SELECT 1 FROM {} k WHERE {})").format(
            self.target.identifier(), test, KEYS, match
        )
        return log_.execute(query).rowcount

    # -- results ---------------------------------------------------------------------------

    def finished(self, plan: _Plan, done: SyncState) -> SyncResult:
        return self.result(
            plan=plan,
            mode=plan.mode,
            reason=plan.reason,
            files_synced=len(plan.files) - plan.start_file,
            position=done.position(self.snapshot.table_uri),
        )

    def result(
        self,
        plan: _Plan | None,
        mode: PlanMode,
        reason: str,
        files_synced: int,
        position: Position | None,
    ) -> SyncResult:
        counts = self.counts
        resumed = plan is not None and plan.mode == "resume"
        return SyncResult(
            target=self.target,
            table_uri=self.snapshot.table_uri,
            version=self.snapshot.version,
            skipped=plan is None,
            plan=mode,
            reason=reason,
            base_version=plan.base if plan else None,
            files_total=len(self.snapshot.files),
            files_planned=len(plan.files) if plan else 0,
            files_synced=files_synced,
            resumed_from_file=plan.start_file if resumed and plan else None,
            resumed_from_row=plan.start_row if resumed and plan else None,
            rows_read=counts.rows_read,
            rows_inserted=counts.inserted,
            rows_updated=counts.updated,
            rows_unchanged=counts.rows_read - counts.inserted - counts.updated,
            rows_deleted=counts.deleted,
            deletes=self.deletes_applied if plan else "none",
            created_target=self.created,
            columns_added=self.columns_added,
            retries=self.retries,
            seconds=time.monotonic() - self.started,
            statements=list(self.statements),
            position=position,
            position_reset=self.position_reset,
        )


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)


def _is_empty(conn: psycopg.Connection, target: TableName) -> bool:
    query = sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(target.identifier())
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def _estimated_rows(conn: psycopg.Connection, target: TableName) -> int | None:
    row = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
        (target.identifier().as_string(conn),),
    ).fetchone()
    return None if row is None or row[0] < 0 else row[0]

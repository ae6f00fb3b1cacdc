"""The sync's sink connection: pinned text settings, the target's lock, the staging table.

One connection at a time, opened on first use and again after a transient error dropped it
(retries.py). Each new connection pins UTF-8 and the portable text settings for its session
(the hdiff hashes text rendered in them, upsert.py) and takes the target's session advisory
lock (the key `ddl.lock_target` uses), held until the connection ends: runs of one target
(and loads of it) never interleave, and a lost connection releases the lock with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.flows.delta_sync import upsert
from pgflow.sinks.postgres import ddl
from pgflow.sinks.postgres.sql_log import MAX_LOGGED_STATEMENTS, SqlLog
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS, apply_settings

Connect = Callable[[], psycopg.Connection]

SESSION_SETTINGS = {"client_encoding": "UTF8", **PORTABLE_TEXT_SETTINGS}


class DistinctSqlLog(SqlLog):
    """A SqlLog that keeps each distinct statement once: batches repeat the same SQL."""

    def __init__(self, conn: psycopg.Connection, statements: list[str]):
        super().__init__(conn)
        self.statements = statements

    def record(self, query: sql.Composable | str) -> None:
        text = query if isinstance(query, str) else query.as_string(self.conn)
        if text not in self.statements and len(self.statements) < MAX_LOGGED_STATEMENTS:
            self.statements.append(text)


class Session:
    """The run's connection to the sink, (re)opened on use; every connection's statements
    go to one list, `statements`."""

    def __init__(self, connect: Connect, target: TableName):
        self.connect = connect
        self.target = target
        self.statements: list[str] = []
        self.conn: psycopg.Connection | None = None
        self.log: DistinctSqlLog | None = None
        self.staged = False  # the staging table exists on this connection

    def sql_log(self) -> DistinctSqlLog:
        """The open connection's log; a new connection, settings pinned and locked, if none."""
        if self.conn is None or self.conn.closed:
            conn = self.connect()
            conn.autocommit = True
            apply_settings(conn, SESSION_SETTINGS, local=False)
            self.conn = conn
            self.log = DistinctSqlLog(conn, self.statements)
            self.staged = False
            ddl.lock_target_for_session(self.log, self.target)
        assert self.log is not None
        return self.log

    def ensure_stage(self, columns: Sequence[str]) -> None:
        """The staging table on this connection, created on first use."""
        log = self.sql_log()
        if self.staged:
            return
        upsert.create_stage(log, self.target, columns)
        self.staged = True

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
        self.log = None

"""The sink connections of one group run: two per sink, shared by the members writing to it.

The applying connection runs each member's batch transactions and holds the members' target
locks for the whole run; the staging connection copies the next batch's changes meanwhile.
Both are opened the way the member's connection resource opens them (secrets stay there),
when a member first needs them; a sink that cannot be reached fails only its members.
"""

from __future__ import annotations

from contextlib import ExitStack

import psycopg

from pgflow.flows.cdc.group_model import GroupMember
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS, apply_settings


class SinkConnections:
    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._applying: dict[str, psycopg.Connection] = {}
        self._staging: dict[str, SqlLog] = {}

    def applying(self, member: GroupMember) -> psycopg.Connection:
        """The member's sink connection for its transactions (autocommit)."""
        conn = self._applying.get(member.sink_id)
        if conn is None:
            conn = self._stack.enter_context(member.connect_sink(autocommit=True))
            self._applying[member.sink_id] = conn
        return conn

    def staging(self, member: GroupMember) -> SqlLog:
        """The member's second sink connection, where batches are staged (autocommit, text
        parsed with the same settings the decoding backend renders with)."""
        log = self._staging.get(member.sink_id)
        if log is None:
            conn = self._stack.enter_context(member.connect_sink(autocommit=True))
            apply_settings(conn, PORTABLE_TEXT_SETTINGS, local=False)
            log = self._staging[member.sink_id] = SqlLog(conn)
        return log


class BatchConnections:
    """Connections that live for one batch: opened while it is staged, closed after its apply
    (in the applier thread). A Delta member stages its batch in TEMPORARY tables of such a
    source session, shared by the batch's Delta members of one sink_id: whatever stops the
    run, they die with it and nothing is left behind."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._logs: dict[str, SqlLog] = {}
        self.tables = 0  # temporary tables made so far, for their names

    def staging(self, member: GroupMember) -> SqlLog:
        log = self._logs.get(member.sink_id)
        if log is None:
            conn = self._stack.enter_context(member.connect_sink(autocommit=True))
            apply_settings(conn, PORTABLE_TEXT_SETTINGS, local=False)
            log = self._logs[member.sink_id] = SqlLog(conn)
        return log

    def close(self) -> None:
        self._logs.clear()
        self._stack.close()

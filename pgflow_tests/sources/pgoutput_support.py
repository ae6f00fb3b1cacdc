"""Reading pgoutput messages from a real cluster: the slot, the peeking session, helpers.

Each test sets up its tables and publication, then creates a logical slot named after its
database (slot names are cluster-wide) and drops it at the end, pass or fail: a forgotten slot
retains WAL for ever. Messages are read with pg_logical_slot_peek_binary_changes, which decodes
in the peeking backend, so column values are rendered with the peeking session's settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgflow.sources.pgoutput import decode, lsn_to_int
from pgflow.sources.pgoutput_messages import Message
from pgflow_tests.pg import execute, fetch

PUBLICATION = "pub"
# The settings of the session doing the peek: they decide how column values are rendered.
RENDERING = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}
PEEK = (
    "SELECT lsn::text, xid::text::bigint, data"
    " FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,"
    " 'proto_version', '1', 'publication_names', %s{options})"
)


@dataclass(frozen=True)
class Row:
    lsn: int  # the peek's lsn column
    xid: int
    data: bytes
    message: Message


@dataclass(frozen=True)
class Slot:
    uri: str
    name: str

    def peek(self, *options: str, conn: psycopg.Connection | None = None) -> list[Row]:
        """Every message so far (not consumed); `options` are extra pgoutput name/value pairs."""
        if conn is None:
            with session(self.uri) as own:
                return self.peek(*options, conn=own)
        query = PEEK.format(options=", %s" * len(options))
        rows = conn.execute(query, (self.name, PUBLICATION, *options)).fetchall()
        return [Row(lsn_to_int(lsn), xid, data, decode(data)) for lsn, xid, data in rows]

    def messages(self, *options: str) -> list[Message]:
        return [row.message for row in self.peek(*options)]


OpenSlot = Callable[[str], Slot]


def session(uri: str, **settings: str) -> psycopg.Connection:
    conn = psycopg.connect(uri, autocommit=True)
    for name, value in {**RENDERING, **settings}.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


def database_name(uri: str) -> str:
    return conninfo_to_dict(uri)["dbname"]  # type: ignore[return-value]


def drop_slot(uri: str, name: str) -> None:
    # A peek that failed halfway may keep the slot active for a moment: retry briefly.
    for _ in range(50):
        try:
            execute(uri, "SELECT pg_drop_replication_slot(%s)", (name,))
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.1)
    execute(uri, "SELECT pg_drop_replication_slot(%s)", (name,))


def of_type(messages: list[Message], kind: type) -> list:
    return [message for message in messages if isinstance(message, kind)]


def relation_oid(uri: str, table: str) -> int:
    return fetch(uri, "SELECT %s::regclass::oid::bigint", (table,))[0][0]


def in_transaction(uri: str, *statements: str) -> tuple[int, datetime, datetime]:
    """Run statements in one transaction: its xid and clock readings around the commit."""
    with psycopg.connect(uri) as conn:
        xid = scalar(conn, "SELECT pg_current_xact_id()::text::bigint % 4294967296")
        for statement in statements:
            conn.execute(statement)
        before = scalar(conn, "SELECT clock_timestamp()")
        conn.commit()
        after = scalar(conn, "SELECT clock_timestamp()")
    return int(xid), before, after


def scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


IDENTITIES = """
CREATE TABLE dflt (id int PRIMARY KEY, code text, v int);
CREATE TABLE full_rows (id int PRIMARY KEY, code text, v int);
ALTER TABLE full_rows REPLICA IDENTITY FULL;
CREATE TABLE by_index (id int PRIMARY KEY, code text NOT NULL, v int);
CREATE UNIQUE INDEX by_index_code ON by_index (code);
ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_code;
CREATE TABLE no_identity (id int, code text, v int);
ALTER TABLE no_identity REPLICA IDENTITY NOTHING;
INSERT INTO dflt VALUES (1, 'a', 1), (2, 'b', 1);
INSERT INTO full_rows VALUES (1, 'a', 1);
INSERT INTO by_index VALUES (1, 'a', 1);
INSERT INTO no_identity VALUES (1, 'a', 1);
CREATE PUBLICATION pub FOR TABLE dflt, full_rows, by_index, no_identity;
"""


def flush_wal(uri: str) -> None:
    """Wait until the WAL written so far is flushed: a peek decodes only flushed WAL.

    On PostgreSQL 15 a non-transactional message is not flushed when emitted (the `flush`
    argument came in 17) and no commit follows it: the WAL writer flushes it within
    wal_writer_delay (200 ms). A commit of a transaction that only took an xid does not either.
    """
    (written,), *_ = fetch(uri, "SELECT pg_current_wal_insert_lsn()::text")
    deadline = time.monotonic() + 10
    while not fetch(uri, "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (written,))[0][0]:
        assert time.monotonic() < deadline, f"WAL not flushed up to {written} in 10 s"
        time.sleep(0.02)

"""The pgoutput decoder against messages a real PostgreSQL 15 cluster wrote (proto_version 1).

Each test sets up its tables and publication, then creates a logical slot named after its
database (slot names are cluster-wide) and drops it at the end, pass or fail: a forgotten slot
retains WAL for ever. Messages are read with pg_logical_slot_peek_binary_changes, which decodes
in the peeking backend, so column values are rendered with the peeking session's settings.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.string import TextLoader

from pgflow.sources.pgoutput import PgoutputError, decode, lsn_to_int, lsn_to_text
from pgflow.sources.pgoutput_messages import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    RelationColumn,
    Truncate,
    TypeInfo,
    Update,
)
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


@pytest.fixture
def open_slot(fresh_db: str) -> Iterator[OpenSlot]:
    """Run setup SQL, then create a pgoutput slot: later changes are what it decodes."""
    created: list[str] = []

    def open_(setup: str) -> Slot:
        execute(fresh_db, setup)
        name = f"s_{database_name(fresh_db)}_{len(created)}"
        execute(fresh_db, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
        created.append(name)
        return Slot(fresh_db, name)

    try:
        yield open_
    finally:
        for name in created:
            drop_slot(fresh_db, name)


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


# --- inserts, relations, transaction framing -------------------------------------------------

KINDS = """
CREATE TABLE kinds (
    id int, code text, big bigint, amount numeric(12, 3), note text, missing text, flag boolean,
    gone int, at timestamptz, doc jsonb, tags text[], uid uuid, raw bytea, ratio float8,
    label varchar(20), twice bigint GENERATED ALWAYS AS (big * 2) STORED,
    PRIMARY KEY (id, code)
);
ALTER TABLE kinds DROP COLUMN gone;
CREATE PUBLICATION pub FOR TABLE kinds;
"""
NOTE = "tab\there\nnew line\\backslash 'single' \"double\" é ☃ 😀"
INSERT_KIND = """
INSERT INTO kinds (id, code, big, amount, note, missing, flag, at, doc, tags, uid, raw, ratio, label)
VALUES (1, 'A', 9007199254740993, 12345.678, {note}, NULL, true, '2026-03-04 05:06:07.123456+02',
    '{{"b": [1, 2.50, null], "a": "x\\ty"}}', ARRAY['plain', 'with space', NULL, 'q"uote', ''],
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff5c0a', 0.1, 'label')
"""
KIND_COLUMNS = [
    *("id", "code", "big", "amount", "note", "missing", "flag"),
    *("at", "doc", "tags", "uid", "raw", "ratio", "label"),
]


def insert_kind(uri: str) -> tuple[int, datetime, datetime]:
    with psycopg.connect(uri) as conn:
        note = psycopg.sql.Literal(NOTE).as_string(conn)
    return in_transaction(uri, INSERT_KIND.format(note=note))


def test_an_insert_of_many_types_decodes_to_the_text_postgres_renders(
    open_slot: OpenSlot,
) -> None:
    slot = open_slot(KINDS)
    insert_kind(slot.uri)
    with session(slot.uri) as conn:
        messages = [row.message for row in slot.peek(conn=conn)]
        assert [type(m) for m in messages] == [Begin, Relation, Insert, Commit]
        relation, insert = messages[1], messages[2]
        assert isinstance(insert, Insert) and isinstance(relation, Relation)
        casts = ", ".join(f"{column}::text" for column in KIND_COLUMNS)
        cast = conn.execute(f"SELECT {casts} FROM kinds").fetchone()
        wire = output_text(conn, relation, f"SELECT {', '.join(KIND_COLUMNS)} FROM kinds")
    assert insert.relation_oid == relation.oid == relation_oid(slot.uri, "kinds")
    # Values are the types' output functions, as in a text-format result. `::text` agrees for
    # every type here but boolean: the bool -> text cast says 'true', boolout says 't'.
    assert insert.new == wire
    flag = KIND_COLUMNS.index("flag")
    assert cast[flag] == "true" and insert.new[flag] == "t"  # type: ignore[index]
    assert insert.new[:flag] + insert.new[flag + 1 :] == cast[:flag] + cast[flag + 1 :]  # type: ignore[index]
    assert dict(zip(KIND_COLUMNS, insert.new, strict=True)) == {
        "id": "1",
        "code": "A",
        "big": "9007199254740993",
        "amount": "12345.678",
        "note": NOTE,
        "missing": None,
        "flag": "t",
        "at": "2026-03-04 03:06:07.123456+00",
        "doc": '{"a": "x\\ty", "b": [1, 2.50, null]}',
        "tags": '{plain,"with space",NULL,"q\\"uote",""}',
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "raw": "\\x00ff5c0a",
        "ratio": "0.1",
        "label": "label",
    }


def output_text(conn: psycopg.Connection, relation: Relation, query: str) -> tuple | None:
    """The row as the server sends it in text format, unparsed (each type's output function)."""
    cursor = conn.cursor()
    for column in relation.columns:
        cursor.adapters.register_loader(column.type_oid, TextLoader)
    return cursor.execute(query).fetchone()


def test_the_relation_message_describes_the_published_columns(open_slot: OpenSlot) -> None:
    slot = open_slot(KINDS)
    insert_kind(slot.uri)
    (relation,) = of_type(slot.messages(), Relation)
    catalog = fetch(
        slot.uri,
        "SELECT attname, atttypid::bigint, atttypmod FROM pg_attribute"
        " WHERE attrelid = 'kinds'::regclass AND attnum > 0 AND NOT attisdropped"
        " AND attgenerated = '' ORDER BY attnum",
    )
    expected = tuple(
        RelationColumn(name, type_oid, modifier, name in ("id", "code"))
        for name, type_oid, modifier in catalog
    )
    assert relation == Relation(relation.oid, "public", "kinds", "d", expected)
    # Dropped and generated columns are not sent; a few OIDs and modifiers spelled out:
    assert [c.name for c in relation.columns] == KIND_COLUMNS
    by_name = {c.name: c for c in relation.columns}
    assert (by_name["id"].type_oid, by_name["big"].type_oid, by_name["note"].type_oid) == (
        23,
        20,
        25,
    )
    assert by_name["amount"].type_modifier == (12 << 16 | 3) + 4  # numeric(12, 3)
    assert by_name["label"].type_modifier == 20 + 4  # varchar(20)
    assert by_name["note"].type_modifier == -1


def test_begin_and_commit_frame_each_transaction(open_slot: OpenSlot) -> None:
    slot = open_slot("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t;")
    first = in_transaction(slot.uri, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
    second = in_transaction(slot.uri, "INSERT INTO t VALUES (3)")
    rows = slot.peek()
    commits = [i for i, row in enumerate(rows) if isinstance(row.message, Commit)]
    assert len(commits) == 2 and commits[-1] == len(rows) - 1
    transactions = [rows[: commits[0] + 1], rows[commits[0] + 1 :]]
    for (xid, before, after), txn in zip((first, second), transactions, strict=True):
        assert_framed(txn, xid, before, after)
    assert transactions[1][0].message.final_lsn >= transactions[0][-1].message.end_lsn  # type: ignore[union-attr]
    current = lsn_to_int(fetch(slot.uri, "SELECT pg_current_wal_lsn()::text")[0][0])
    assert current >= transactions[1][-1].message.end_lsn  # type: ignore[union-attr]


def assert_framed(rows: list[Row], xid: int, before: datetime, after: datetime) -> None:
    begin, commit = rows[0].message, rows[-1].message
    assert isinstance(begin, Begin) and isinstance(commit, Commit)
    assert begin.xid == xid and all(row.xid == xid for row in rows)
    assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
    assert commit.flags == 0
    # The peek reports each change at its own WAL position and the commit at its end.
    assert rows[-1].lsn == commit.end_lsn
    assert all(row.lsn < commit.commit_lsn for row in rows[:-1])
    assert before <= begin.commit_time == commit.commit_time <= after
    assert begin.commit_time.utcoffset() is not None and not begin.commit_time.utcoffset()


def test_values_are_rendered_with_the_settings_of_the_peeking_session(
    open_slot: OpenSlot,
) -> None:
    slot = open_slot(
        "CREATE TABLE r (id int PRIMARY KEY, at timestamptz, day date, raw bytea, third float8);"
        " CREATE PUBLICATION pub FOR TABLE r;"
    )
    with session(slot.uri, TimeZone="Asia/Kolkata") as writer:  # the writer's settings: moot
        writer.execute(
            "INSERT INTO r VALUES (1, '2026-01-02 03:04:05+00', '2026-01-02', 'ab', 1/3.0)"
        )
    other = {"TimeZone": "America/New_York", "DateStyle": "SQL, DMY", "bytea_output": "escape"}
    seen = [peek_and_render(slot, {}), peek_and_render(slot, {**other, "extra_float_digits": "0"})]
    for decoded, rendered in seen:
        assert decoded == rendered
    assert seen[0][0] == (
        "1",
        "2026-01-02 03:04:05+00",
        "2026-01-02",
        "\\x6162",
        "0.3333333333333333",
    )
    assert seen[1][0] == ("1", "01/01/2026 22:04:05 EST", "02/01/2026", "ab", "0.333333333333333")


def peek_and_render(slot: Slot, settings: dict[str, str]) -> tuple[tuple, tuple]:
    with session(slot.uri, **settings) as conn:
        (insert,) = of_type([row.message for row in slot.peek(conn=conn)], Insert)
        rendered = conn.execute(
            "SELECT id::text, at::text, day::text, raw::text, third::text FROM r"
        )
        return insert.new, rendered.fetchone()


# --- updates, deletes and the old row ---------------------------------------------------------

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


def test_the_old_row_of_an_update_follows_the_replica_identity(open_slot: OpenSlot) -> None:
    slot = open_slot(IDENTITIES)
    for statement in (
        "UPDATE dflt SET v = 2 WHERE id = 1",
        "UPDATE dflt SET id = 10 WHERE id = 1",
        "UPDATE full_rows SET v = 2",
        "UPDATE by_index SET v = 2",
        "UPDATE by_index SET code = 'z'",
    ):
        execute(slot.uri, statement)
    # Without a replica identity a table published for updates refuses them.
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="replica identity"):
        execute(slot.uri, "UPDATE no_identity SET id = 2")
    messages = slot.messages()
    oids = {r.name: r.oid for r in of_type(messages, Relation)}
    assert [u.relation_oid for u in of_type(messages, Update)] == [
        oids[name] for name in ("dflt", "dflt", "full_rows", "by_index", "by_index")
    ]
    assert [(u.old_kind, u.old, u.new) for u in of_type(messages, Update)] == [
        (None, None, ("1", "a", "2")),  # the key did not change: no old row
        ("K", ("1", None, None), ("10", "a", "2")),  # only the key, other columns NULL
        ("O", ("1", "a", "1"), ("1", "a", "2")),  # FULL: the whole old row, always
        (None, None, ("1", "a", "2")),
        ("K", (None, "a", None), ("1", "z", "2")),  # the identity index's column
    ]


def test_relation_messages_carry_the_replica_identity_and_its_columns(
    open_slot: OpenSlot,
) -> None:
    slot = open_slot(IDENTITIES)
    for table in ("dflt", "full_rows", "by_index"):
        execute(slot.uri, f"UPDATE {table} SET v = 3")
    execute(slot.uri, "INSERT INTO no_identity VALUES (2, 'b', 2)")
    relations = {r.name: r for r in of_type(slot.messages(), Relation)}
    identity = {name: r.replica_identity for name, r in relations.items()}
    assert identity == {"dflt": "d", "full_rows": "f", "by_index": "i", "no_identity": "n"}
    keys = {name: [c.name for c in r.columns if c.is_key] for name, r in relations.items()}
    # With FULL every column is flagged as part of the key.
    assert keys == {
        "dflt": ["id"],
        "full_rows": ["id", "code", "v"],
        "by_index": ["code"],
        "no_identity": [],
    }


def test_a_delete_sends_the_key_or_with_full_identity_the_whole_row(
    open_slot: OpenSlot,
) -> None:
    slot = open_slot(IDENTITIES)
    for table in ("dflt", "full_rows", "by_index"):
        execute(slot.uri, f"DELETE FROM {table} WHERE id = 1")
    deletes = of_type(slot.messages(), Delete)
    assert [(d.old_kind, d.old) for d in deletes] == [
        ("K", ("1", None, None)),
        ("O", ("1", "a", "1")),
        ("K", (None, "a", None)),
    ]


# --- TOAST --------------------------------------------------------------------------------

DOCS = """
CREATE TABLE docs (id int PRIMARY KEY, body text, v int);
CREATE TABLE docs_full (id int PRIMARY KEY, body text, v int);
ALTER TABLE docs_full REPLICA IDENTITY FULL;
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE docs_full ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO docs SELECT 1, string_agg(md5(g::text), ''), 1 FROM generate_series(1, 700) g;
INSERT INTO docs_full SELECT * FROM docs;
CREATE PUBLICATION pub FOR TABLE docs, docs_full;
"""


def body(uri: str) -> str:
    return fetch(uri, "SELECT body FROM docs WHERE id = 1")[0][0]


def toast_chunks(uri: str, table: str) -> int:
    toast = fetch(
        uri, "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = %s::regclass", (table,)
    )
    return fetch(uri, f"SELECT count(*) FROM {toast[0][0]}")[0][0]


def test_an_untouched_toasted_value_is_sent_as_unchanged(open_slot: OpenSlot) -> None:
    slot = open_slot(DOCS)
    text = body(slot.uri)
    assert len(text) == 22400 and toast_chunks(slot.uri, "docs") > 1  # stored out of line
    execute(slot.uri, "UPDATE docs SET v = 2")
    execute(slot.uri, "UPDATE docs_full SET v = 2")
    execute(slot.uri, "INSERT INTO docs SELECT 2, body, 1 FROM docs WHERE id = 1")
    execute(slot.uri, "UPDATE docs SET body = body || 'x', v = 3 WHERE id = 1")
    execute(slot.uri, "DELETE FROM docs_full")
    messages = slot.messages()
    untouched, full, changed = of_type(messages, Update)
    assert untouched.new == ("1", UNCHANGED, "2") and untouched.old is None
    # FULL: the old row carries the value (it is inlined into the WAL), the new row does not.
    assert full.old_kind == "O" and full.old == ("1", text, "1")
    assert full.new == ("1", UNCHANGED, "2")
    # A value written in the transaction is sent whole, whether copied or changed.
    assert of_type(messages, Insert)[0].new == ("2", text, "1")
    assert changed.new == ("1", text + "x", "3")
    assert of_type(messages, Delete)[0].old == ("1", text, "2")
    assert repr(UNCHANGED) == "UNCHANGED"


# --- truncate, logical messages, origins, types -----------------------------------------------


def test_truncate_lists_every_truncated_relation_and_its_options(open_slot: OpenSlot) -> None:
    slot = open_slot(
        "CREATE TABLE parent (id serial PRIMARY KEY);"
        " CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent);"
        " CREATE TABLE solo (id int);"
        " CREATE PUBLICATION pub FOR TABLE parent, child, solo;"
    )
    execute(slot.uri, "TRUNCATE parent RESTART IDENTITY CASCADE")
    execute(slot.uri, "TRUNCATE solo")
    cascaded, plain = of_type(slot.messages(), Truncate)
    oids = {table: relation_oid(slot.uri, table) for table in ("parent", "child", "solo")}
    assert set(cascaded.relation_oids) == {oids["parent"], oids["child"]}
    assert len(cascaded.relation_oids) == 2
    assert (cascaded.cascade, cascaded.restart_identity) == (True, True)
    assert plain == Truncate((oids["solo"],), cascade=False, restart_identity=False)


def test_logical_decoding_messages_are_sent_only_when_asked_for(open_slot: OpenSlot) -> None:
    slot = open_slot("CREATE PUBLICATION pub FOR ALL TABLES")
    execute(slot.uri, "SELECT pg_logical_emit_message(true, 'pfx', 'hello')")
    execute(slot.uri, "SELECT pg_logical_emit_message(false, 'other', '\\x00ff'::bytea)")
    flush_wal(slot.uri)
    assert slot.peek() == []
    rows = slot.peek("messages", "true")
    assert [type(row.message) for row in rows] == [Begin, LogicalMessage, Commit, LogicalMessage]
    transactional, outside = rows[1].message, rows[3].message
    assert transactional == LogicalMessage(True, rows[1].lsn, "pfx", b"hello")
    assert transactional.lsn <= rows[2].message.commit_lsn  # type: ignore[union-attr]
    assert outside == LogicalMessage(False, rows[3].lsn, "other", b"\x00\xff")
    assert rows[3].xid == 0  # not part of a transaction


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


def test_an_origin_and_a_user_type_are_announced_before_the_change(open_slot: OpenSlot) -> None:
    slot = open_slot(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');"
        " CREATE TABLE moods (id int PRIMARY KEY, m mood);"
        " CREATE PUBLICATION pub FOR TABLE moods;"
    )
    origin = f"o_{database_name(slot.uri)}"
    execute(slot.uri, "SELECT pg_replication_origin_create(%s)", (origin,))
    try:
        insert_from_origin(slot.uri, origin)
        messages = slot.messages()
    finally:
        execute(slot.uri, "SELECT pg_replication_origin_drop(%s)", (origin,))
    assert [type(m) for m in messages] == [Begin, Origin, TypeInfo, Relation, Insert, Commit]
    mood = fetch(slot.uri, "SELECT 'mood'::regtype::oid::bigint")[0][0]
    assert messages[1] == Origin(lsn_to_int("5/ABCDEF01"), origin)
    assert messages[2] == TypeInfo(mood, "public", "mood")
    assert messages[3].columns[1].type_oid == mood  # type: ignore[union-attr]
    assert messages[4].new == ("1", "happy")  # type: ignore[union-attr]


def insert_from_origin(uri: str, origin: str) -> None:
    with psycopg.connect(uri) as conn:
        conn.execute("SELECT pg_replication_origin_session_setup(%s)", (origin,))
        try:
            conn.execute("SELECT pg_replication_origin_xact_setup('5/ABCDEF01', now())")
            conn.execute("INSERT INTO moods VALUES (1, 'happy')")
            conn.commit()
        finally:
            conn.rollback()
            conn.execute("SELECT pg_replication_origin_session_reset()")
            conn.commit()


def test_a_multi_statement_transaction_is_one_begin_commit_pair(open_slot: OpenSlot) -> None:
    slot = open_slot(
        "CREATE TABLE items (id int PRIMARY KEY, name text);"
        " CREATE TABLE notes (id int PRIMARY KEY, body text);"
        " CREATE TABLE private (id int);"
        " CREATE PUBLICATION pub FOR TABLE items, notes;"
    )
    xid, _, _ = in_transaction(
        slot.uri,
        "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "UPDATE items SET name = 'B' WHERE id = 2",
        "DELETE FROM items WHERE id = 3",
        "INSERT INTO private VALUES (1)",
        "INSERT INTO notes VALUES (1, 'n')",
    )
    in_transaction(slot.uri, "INSERT INTO private VALUES (2)")  # touches nothing published
    with psycopg.connect(slot.uri) as conn:
        conn.execute("INSERT INTO items VALUES (4, 'rolled back')")
        conn.rollback()
    rows = slot.peek()
    assert {row.xid for row in rows} == {xid}  # the empty and the rolled back: nothing at all
    items, notes = of_type([row.message for row in rows], Relation)
    assert [row.message for row in rows[2:-1]] == [
        Insert(items.oid, ("1", "a")),
        Insert(items.oid, ("2", "b")),
        Insert(items.oid, ("3", "c")),
        Update(items.oid, None, None, ("2", "B")),
        Delete(items.oid, ("3", None), "K"),
        notes,
        Insert(notes.oid, ("1", "n")),
    ]


def test_the_binary_option_sends_binary_values(open_slot: OpenSlot) -> None:
    slot = open_slot(
        "CREATE TABLE b (id int PRIMARY KEY, big bigint, txt text, missing text);"
        " CREATE PUBLICATION pub FOR TABLE b;"
    )
    execute(slot.uri, "INSERT INTO b VALUES (1, -2, 'a\tb', NULL)")
    (insert,) = of_type(slot.messages("binary", "true"), Insert)
    assert insert.new == (struct.pack("!i", 1), struct.pack("!q", -2), b"a\tb", None)


# --- malformed data -----------------------------------------------------------------------


def insert_bytes(*columns: bytes, marker: bytes = b"N") -> bytes:
    return (
        b"I"
        + struct.pack("!I", 16384)
        + marker
        + struct.pack("!H", len(columns))
        + b"".join(columns)
    )


def text_column(value: bytes) -> bytes:
    return b"t" + struct.pack("!i", len(value)) + value


def test_a_handmade_message_decodes() -> None:
    data = insert_bytes(text_column(b"1"), b"n", b"u", b"b" + struct.pack("!i", 2) + b"\0\1")
    assert decode(data) == Insert(16384, ("1", None, UNCHANGED, b"\0\1"))
    assert decode(bytearray(data)) == decode(memoryview(data)) == decode(data)


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        (b"", 0, "no data"),
        (b"Z\0\0", 0, "unknown message type 'Z'"),
        (b"S" + bytes(8), 0, "unknown message type 'S'"),  # stream start: protocol 2 only
        (b"I\0\0", 1, "truncated"),
        (insert_bytes(marker=b"X"), 5, "expected 'N', found 'X'"),
        (insert_bytes(b"z"), 8, "unknown column kind 'z'"),
        (insert_bytes(b"t" + struct.pack("!i", -1)), 9, "value of -1 bytes"),
        (insert_bytes(b"t" + struct.pack("!i", 5) + b"abc"), 9, "value of 5 bytes, 3 left"),
        (insert_bytes(text_column(b"\xff\xfe")), 13, "invalid UTF-8"),
        (insert_bytes(text_column(b"1"), b"n")[:-1], 14, "truncated"),
        (insert_bytes(b"n") + b"\0", 9, "1 unexpected bytes after the message"),
        (b"D" + struct.pack("!I", 1) + b"N" + struct.pack("!H", 0), 5, "expected 'K' or 'O'"),
        (b"U" + struct.pack("!I", 1) + b"K" + struct.pack("!H", 0) + b"K", 8, "expected 'N'"),
        (b"R" + struct.pack("!I", 1) + b"public", 5, "unterminated string"),
        (b"B" + struct.pack("!QqI", 1, 2**63 - 1, 1), 9, "timestamp out of range"),
        (b"T" + struct.pack("!IB", 3, 0) + struct.pack("!I", 1), 6, "12 bytes announced, 4 left"),
        (b"M\1" + bytes(8) + b"p\0" + struct.pack("!i", 9) + b"x", 16, "9 bytes announced"),
    ],
)
def test_malformed_data_raises_a_pgoutput_error(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(PgoutputError, match="pgoutput") as raised:
        decode(data)
    assert raised.value.offset == offset
    assert reason in str(raised.value) and reason in raised.value.reason
    assert isinstance(raised.value, ValueError)
    if data:
        assert raised.value.message_type == chr(data[0])
        assert repr(chr(data[0])) in str(raised.value)


def test_every_truncation_of_real_messages_raises_a_pgoutput_error(open_slot: OpenSlot) -> None:
    slot = open_slot(
        IDENTITIES + "CREATE TABLE other (id serial); ALTER PUBLICATION pub ADD TABLE other;"
    )
    execute(slot.uri, "UPDATE dflt SET id = 10 WHERE id = 1")
    execute(slot.uri, "UPDATE full_rows SET v = 2")
    execute(slot.uri, "DELETE FROM dflt WHERE id = 2")
    execute(slot.uri, "TRUNCATE other RESTART IDENTITY")
    execute(slot.uri, "SELECT pg_logical_emit_message(false, 'p', 'content')")
    flush_wal(slot.uri)
    rows = slot.peek("messages", "true")
    kinds = {type(row.message) for row in rows}
    assert kinds == {Begin, Relation, Update, Delete, Truncate, LogicalMessage, Commit}
    for row in rows:
        for cut in range(len(row.data)):
            with pytest.raises(PgoutputError):
                decode(row.data[:cut])
        with pytest.raises(PgoutputError, match="unexpected bytes"):
            decode(row.data + b"\0")


# --- LSNs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("16/B374D848", 0x16B374D848),
        ("0/FFFFFFFF", 2**32 - 1),
        ("1/0", 2**32),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_text_round_trips(text: str, value: int) -> None:
    assert lsn_to_int(text) == value
    assert lsn_to_text(value) == text
    assert lsn_to_int(text.lower()) == value


@pytest.mark.parametrize("text", ["", "16", "16/", "/1", "1/2/3", "G/0", "123456789/0", "-1/0"])
def test_a_malformed_lsn_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not an LSN"):
        lsn_to_int(text)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_an_lsn_out_of_range_is_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        lsn_to_text(value)


def test_lsns_match_what_the_server_prints(fresh_db: str) -> None:
    values = [0, 1, 2**32 - 1, 2**32, 0x16B374D848, 2**63 + 12345, 2**64 - 1]
    for value in values:
        (printed, back), *_ = fetch(
            fresh_db,
            "SELECT ('0/0'::pg_lsn + %s::numeric)::text, (%s::pg_lsn - '0/0'::pg_lsn)::text",
            (str(value), lsn_to_text(value)),
        )
        assert (printed, int(back)) == (lsn_to_text(value), value)
        assert lsn_to_int(printed) == value


# --- speed ----------------------------------------------------------------------------------


def test_decode_throughput(open_slot: OpenSlot) -> None:
    slot = open_slot(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12, 2),"
        " status text, created timestamptz, paid boolean, note text, tags text[]);"
        " CREATE PUBLICATION pub FOR TABLE orders;"
    )
    execute(
        slot.uri,
        "INSERT INTO orders VALUES (123456, 'ACME Corporation', 1234.50, 'shipped',"
        " '2026-03-04 05:06:07.123+00', true, NULL, ARRAY['a', 'b'])",
    )
    (data,) = [row.data for row in slot.peek() if isinstance(row.message, Insert)]
    count = 100_000
    started = time.perf_counter()
    for _ in range(count):
        decode(data)
    elapsed = time.perf_counter() - started
    print(
        f"pgoutput: decoded {count / elapsed:,.0f} Insert messages/s ({len(data)} bytes, 8 columns)"
    )
    assert decode(data).new[1] == "ACME Corporation"  # type: ignore[union-attr]

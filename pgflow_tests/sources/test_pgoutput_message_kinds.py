"""pgoutput decoding of truncates, logical messages, origins and types, multi-statement
transactions and binary values (slots and helpers: pgoutput_support)."""

from __future__ import annotations

import struct

import psycopg

from pgflow.sources.pgoutput import lsn_to_int
from pgflow.sources.pgoutput_messages import (
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    Relation,
    Truncate,
    TypeInfo,
    Update,
)
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sources.pgoutput_support import (
    OpenSlot,
    database_name,
    flush_wal,
    in_transaction,
    of_type,
    relation_oid,
)


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

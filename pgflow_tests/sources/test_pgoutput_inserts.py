"""pgoutput decoding of inserts, relation messages and the Begin/Commit framing of transactions
(slots and helpers: pgoutput_support)."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.types.string import TextLoader

from pgflow.sources.pgoutput import lsn_to_int
from pgflow.sources.pgoutput_messages import (
    Begin,
    Commit,
    Insert,
    Relation,
    RelationColumn,
)
from pgflow_tests.pg import fetch
from pgflow_tests.sources.pgoutput_support import (
    OpenSlot,
    Row,
    Slot,
    in_transaction,
    of_type,
    relation_oid,
    session,
)

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

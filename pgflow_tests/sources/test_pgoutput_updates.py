"""pgoutput decoding of updates and deletes (the old row per replica identity) and TOAST."""

from __future__ import annotations

import psycopg
import pytest

from pgflow.sources.pgoutput_messages import (
    UNCHANGED,
    Delete,
    Insert,
    Relation,
    Update,
)
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sources.pgoutput_support import (
    IDENTITIES,
    OpenSlot,
    of_type,
)


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

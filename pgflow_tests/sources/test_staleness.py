"""Staleness probes on a real source: which indexes make max() a lookup, cursor marks, the
statistics counter, and a CDC slot's pending changes."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgflow.config.model import TableName
from pgflow.sources import cdc
from pgflow.sources.base import Position
from pgflow.sources.catalog import TableNotFound
from pgflow.sources.staleness import (
    DeltaVersion,
    ProbeError,
    SlotMember,
    Verdict,
    column_verdict,
    cursor_index,
    prepare_session,
    slot_verdict,
    statistics_verdict,
    version_verdict,
)
from pgflow_tests.pg import drop_slots, execute, slot_name_for

T = TableName("public", "t")


@pytest.fixture
def conn(source_uri: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(source_uri, autocommit=True) as connection:
        prepare_session(connection)
        yield connection


def write(conn: psycopg.Connection, statement: str) -> None:
    """Write, then flush the statistics now: the probe reads them from another session too."""
    conn.execute(statement)  # type: ignore[arg-type]
    conn.execute("SELECT pg_stat_force_next_flush()")


@pytest.mark.parametrize(
    ("index", "found"),
    [
        ("", False),
        ("CREATE INDEX t_c ON t (c)", True),
        ("CREATE INDEX t_c ON t (c DESC, id)", True),
        ("CREATE INDEX t_c ON t (id, c)", False),  # not the leading column
        ("CREATE INDEX t_c ON t (c) WHERE id > 0", False),  # partial: not every row
        ("CREATE INDEX t_c ON t USING hash (c)", False),  # no order, no max()
        ("CREATE INDEX t_c ON t ((c + 1))", False),  # an expression, not the column
    ],
)
def test_an_index_serves_max_only_when_the_column_leads_a_whole_btree(
    conn: psycopg.Connection, index: str, found: bool
) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, c bigint)")
    if index:
        conn.execute(index)  # type: ignore[arg-type]
    assert cursor_index(conn, T, "c") == ("t_c" if found else None)


def test_partitioned_tables_need_the_index_on_the_parent_or_every_partition(
    conn: psycopg.Connection,
) -> None:
    conn.execute(
        "CREATE TABLE t (id int, c bigint) PARTITION BY RANGE (id);"
        "CREATE TABLE t_1 PARTITION OF t FOR VALUES FROM (0) TO (10);"
        "CREATE TABLE t_2 PARTITION OF t FOR VALUES FROM (10) TO (20)"
    )
    assert cursor_index(conn, T, "c") is None
    conn.execute("CREATE INDEX t_1_c ON t_1 (c)")
    assert cursor_index(conn, T, "c") is None  # t_2 would be scanned
    conn.execute("CREATE INDEX t_2_c ON t_2 (c)")
    assert cursor_index(conn, T, "c") == "t_1_c"
    conn.execute("DROP INDEX t_1_c, t_2_c; CREATE INDEX t_c ON t (c)")
    assert cursor_index(conn, T, "c") == "t_c"
    assert cursor_index(conn, TableName("public", "missing"), "c") is None


def mark(value: str, column: str = "c", value_type: str = "bigint") -> Position:
    return Position("column", f"column:{T}:{column}", value, value_type)


def test_column_verdicts_compare_the_max_with_the_stored_mark(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, c bigint); CREATE INDEX ON t (c)")
    empty = column_verdict(conn, T, "c", mark("5"))
    assert (empty.stale, empty.reason) == (False, "source max(c) NULL (no rows) <= stored mark 5")
    conn.execute("INSERT INTO t VALUES (1, 5), (2, 10)")
    never = column_verdict(conn, T, "c", None)
    assert (never.stale, never.evidence) == (True, "max=10")
    assert never.reason == "never loaded (no stored position); source max(c) 10"
    # Compared as numbers, not text: '9' > '10' as text.
    assert column_verdict(conn, T, "c", mark("9")).stale
    fresh = column_verdict(conn, T, "c", mark("10"))
    assert (fresh.stale, fresh.reason) == (False, "source max(c) 10 = stored mark 10")
    other = column_verdict(conn, T, "c", mark("10", column="d"))
    assert other.stale and "the stored position is for column:public.t:d (bigint)" in other.reason
    retyped = column_verdict(conn, T, "c", mark("10", value_type="integer"))
    assert retyped.stale
    with pytest.raises(ProbeError, match=r"'nope' is not a column of public\.t"):
        column_verdict(conn, T, "nope", None)
    with pytest.raises(TableNotFound):
        column_verdict(conn, TableName("public", "missing"), "c", None)


@pytest.mark.parametrize("partitioned", [False, True])
def test_statistics_verdicts(conn: psycopg.Connection, partitioned: bool) -> None:
    if partitioned:
        conn.execute(
            "CREATE TABLE t (id int, c bigint) PARTITION BY RANGE (id);"
            "CREATE TABLE t_1 PARTITION OF t FOR VALUES FROM (0) TO (10);"
            "CREATE TABLE t_2 PARTITION OF t FOR VALUES FROM (10) TO (20)"
        )
    else:
        conn.execute("CREATE TABLE t (id int, c bigint)")
    write(conn, "INSERT INTO t SELECT g, g FROM generate_series(1, 15) g")
    never = statistics_verdict(conn, T, None)
    assert (never.stale, never.evidence) == (True, "mods=15")
    fresh = statistics_verdict(conn, T, 15)
    assert (fresh.stale, fresh.reason) == (
        False,
        "no writes since the last load (modifications 15)",
    )
    write(conn, "UPDATE t SET c = 0 WHERE id IN (1, 12); DELETE FROM t WHERE id = 2")
    stale = statistics_verdict(conn, T, 15)
    assert (stale.stale, stale.evidence) == (True, "mods=18>15")
    assert stale.reason == "3 rows written since the last load (modifications 18 > 15)"
    reset = statistics_verdict(conn, T, 100)
    assert reset.stale and "statistics were reset" in reset.reason
    with pytest.raises(TableNotFound):
        statistics_verdict(conn, TableName("public", "missing"), 1)


def test_probes_refuse_a_connection_in_a_transaction(source_uri: str) -> None:
    with (
        psycopg.connect(source_uri) as conn,
        pytest.raises(ValueError, match="autocommit"),
    ):
        prepare_session(conn)


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def test_slot_verdicts_look_only_at_the_publication(
    conn: psycopg.Connection, source_uri: str, slot: str
) -> None:
    conn.execute(
        "CREATE TABLE t (id int PRIMARY KEY, c bigint); CREATE TABLE other (id int PRIMARY KEY);"
        "CREATE PUBLICATION pub_t FOR TABLE t"
    )
    loaded = {"answer": False}
    missing = slot_verdict(conn, slot, "pub_t", loaded=lambda: loaded["answer"])
    assert (
        missing.stale
        and missing.reason == f"never loaded (replication slot {slot} not created yet)"
    )
    loaded["answer"] = True
    assert not slot_verdict(conn, slot, "pub_t", loaded=lambda: loaded["answer"]).stale

    cdc.create_slot(conn, slot)
    unloaded = slot_verdict(conn, slot, "pub_t", loaded=lambda: False)
    assert unloaded.stale and unloaded.reason == (
        f"never loaded (slot {slot} exists, no stored position)"
    )
    execute(source_uri, "INSERT INTO other VALUES (1)")  # not published
    quiet = slot_verdict(conn, slot, "pub_t", loaded=lambda: True)
    assert not quiet.stale
    execute(source_uri, "INSERT INTO t VALUES (1, 1), (2, 2)")
    pending = slot_verdict(conn, slot, "pub_t", loaded=lambda: True)
    assert pending.stale and pending.evidence.startswith("lsn=")
    assert "2 data changes for publication pub_t wait in slot" in pending.reason
    execute(source_uri, "INSERT INTO other VALUES (2)")
    again = slot_verdict(conn, slot, "pub_t", loaded=lambda: True)
    assert (again.stale, again.evidence) == (True, pending.evidence)  # nothing new for pub_t
    execute(source_uri, "INSERT INTO t VALUES (3, 3)")
    later = slot_verdict(conn, slot, "pub_t", loaded=lambda: True)
    assert later.evidence != pending.evidence
    # A bound smaller than the pending output: the evidence is the WAL position instead.
    bounded = slot_verdict(conn, slot, "pub_t", loaded=lambda: True, max_changes=1)
    assert bounded.stale and "more may follow" in bounded.reason


def test_a_shared_slot_counts_only_the_tables_own_changes_after_its_position(
    conn: psycopg.Connection, source_uri: str, slot: str
) -> None:
    conn.execute(
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);"
        "CREATE PUBLICATION pub_ab FOR TABLE a, b"
    )
    cdc.create_slot(conn, slot)
    applied: dict[str, int | None] = {"a": None, "b": None}

    def verdict(name: str) -> Verdict:
        member = SlotMember(TableName("public", name), lambda: applied[name])
        return slot_verdict(conn, slot, "pub_ab", loaded=lambda: True, member=member)

    execute(source_uri, "INSERT INTO b VALUES (1), (2)")
    assert not verdict("a").stale, "b's changes are not a's"
    assert verdict("b").stale and "2 data changes" in verdict("b").reason
    applied["b"] = cdc.flush_lsn(conn)  # b applied them; the slot waits for a
    assert not verdict("b").stale
    execute(source_uri, "BEGIN; INSERT INTO a VALUES (1); INSERT INTO b VALUES (3); COMMIT")
    assert verdict("a").stale and verdict("b").stale
    assert "1 data changes" in verdict("b").reason


def test_a_slot_of_another_database_is_an_error(
    conn: psycopg.Connection, make_database, slot: str
) -> None:
    other_uri = make_database()
    with psycopg.connect(other_uri, autocommit=True) as other:
        cdc.create_slot(other, slot)
    with pytest.raises(ProbeError, match="belongs to database"):
        slot_verdict(conn, slot, "pub_t", loaded=lambda: True)


def test_version_verdicts() -> None:
    current = DeltaVersion("file:///lake/t", 7)
    assert (version_verdict(current, None).stale, version_verdict(current, None).evidence) == (
        True,
        "v=7",
    )
    assert version_verdict(current, 6).evidence == "v=7>6"
    # A table re-created at the same path counts from 0 again: still a new run key.
    assert version_verdict(DeltaVersion("file:///lake/t", 0), 7).evidence == "v=0<7"
    fresh = version_verdict(current, 7)
    assert (fresh.stale, fresh.evidence, fresh.reason) == (
        False,
        "v=7",
        "Delta version 7 = synced version",
    )

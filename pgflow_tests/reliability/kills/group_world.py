"""The source and sink of a group kill sweep: tables t1..t4, a change of several transactions
(each one's place in the WAL and every table's rows after it), and the targets as values.

A table's target after any kill must be its source as of its stored position: the rows after
exactly the change transactions that committed before that LSN, no more and no fewer. A
transaction's commit lies between the WAL position read just before it and just after it, so
with a stored position p (the end of some commit, or a point after them all) the transactions
applied are those that began before p.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.reliability.kills.observe import PINNED, PROBE_APP

TABLES = ("t1", "t2", "t3")  # the group in BEFORE
LIVE = "t4"  # the table a live add joins to the group
ROWS = 2000

SOURCE_DDL = """
CREATE TABLE public.{name} (id bigint PRIMARY KEY, qty integer NOT NULL, note text,
                            at timestamptz NOT NULL);
INSERT INTO public.{name}
SELECT g, g % 97, CASE WHEN g % 11 = 0 THEN NULL ELSE repeat(md5(g::text), 2) END,
       timestamptz '2024-01-01 00:00+00' + g * interval '1 minute'
FROM generate_series(1, {rows}) g;
"""

# Six source transactions over the tables (t2 changes in three of them, t4 in two).
CHANGES = (
    "UPDATE public.t1 SET qty = qty + 1000 WHERE id % 10 = 1",
    "UPDATE public.t2 SET qty = qty + 1000 WHERE id % 10 = 2;"
    " INSERT INTO public.t2 SELECT g, 1, 'new', now() FROM generate_series(100001, 100100) g",
    "UPDATE public.t3 SET note = 'x' || id WHERE id % 20 = 3;"
    " DELETE FROM public.t1 WHERE id % 50 = 7;"
    " UPDATE public.t2 SET qty = -qty WHERE id % 25 = 4;"
    " UPDATE public.t4 SET qty = qty + 7 WHERE id % 9 = 0",
    "DELETE FROM public.t3 WHERE id % 40 = 9;"
    " INSERT INTO public.t3 SELECT g, 2, NULL, now() FROM generate_series(200001, 200060) g",
    "UPDATE public.t2 SET qty = qty + 1, note = NULL WHERE id % 10 = 5",
    "DELETE FROM public.t4 WHERE id % 13 = 1; UPDATE public.t1 SET qty = 0 WHERE id % 30 = 11",
)
# A change before BEFORE, so that BEFORE is a streaming run's state, not a snapshot's.
WARM_UP = "UPDATE public.t1 SET qty = qty + 1 WHERE id <= 10; UPDATE public.t3 SET qty = 5"


@dataclass
class History:
    """The change's transactions: where each began, and every table's rows after k of them."""

    began: list[int] = field(default_factory=list)  # WAL position read before transaction i
    ended: int = 0  # WAL position read after the last one
    digests: list[dict[str, tuple[int, str]]] = field(default_factory=list)  # k -> table -> rows

    def applied(self, position: int) -> int:
        """How many of the transactions a target stored at `position` holds."""
        return sum(1 for lsn in self.began if lsn < position)

    def expected(self, table: str, position: int) -> tuple[int, str]:
        return self.digests[self.applied(position)][table]

    @property
    def final(self) -> dict[str, tuple[int, str]]:
        return self.digests[-1]


def create_source(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        for name in (*TABLES, LIVE):
            conn.execute(SOURCE_DDL.format(name=name, rows=ROWS).encode())  # fixed text
            conn.execute(sql.SQL("ANALYZE {}").format(TableName("public", name).identifier()))


def warm_up(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(WARM_UP)


def apply_changes(uri: str) -> History:
    """Run CHANGES, one transaction each, recording where they lie and the rows after each."""
    history = History()
    with psycopg.connect(uri, autocommit=True, options=PINNED) as conn:
        history.digests.append(_digests(conn))
        for statement in CHANGES:
            history.began.append(_insert_lsn(conn))
            with conn.transaction():
                conn.execute(statement.encode())  # fixed text, several statements
            history.digests.append(_digests(conn))
        history.ended = _insert_lsn(conn)
    return history


def _insert_lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return lsn_to_int(row[0])


def _digests(conn: psycopg.Connection[Any], schema: str = "public") -> dict[str, tuple[int, str]]:
    return {
        name: d
        for name in (*TABLES, LIVE)
        if (d := table_digest(conn, TableName(schema, name))) is not None
    }


def table_digest(conn: psycopg.Connection[Any], table: TableName) -> tuple[int, str] | None:
    """Row count and md5 of the sorted row texts; None when the table does not exist."""
    found = conn.execute("SELECT to_regclass(%s)", (str(table),)).fetchone()
    if found is None or found[0] is None:
        return None
    query = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(ROW(id, qty, note, at)::text, E'\\n'"
        " ORDER BY id)), '') FROM {}"
    ).format(table.identifier())
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


@dataclass(frozen=True)
class TargetState:
    digest: tuple[int, str] | None  # None: no target table
    position: int | None  # the stored LSN
    source: str | None  # the position's source (cdc:<table>:<slot>)


def sink_state(uri: str, tables: tuple[str, ...]) -> tuple[dict[str, TargetState], int]:
    """Each member's target, and the sink's staging tables."""
    states: dict[str, TargetState] = {}
    with psycopg.connect(uri, options=PINNED, application_name=PROBE_APP, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")
        has_state = conn.execute("SELECT to_regclass('_pgflow.pipeline_state')").fetchone()
        for name in tables:
            digest = table_digest(conn, TableName("landing", name))
            row = None
            if has_state and has_state[0] is not None:
                row = conn.execute(
                    "SELECT value, source FROM _pgflow.pipeline_state"
                    " WHERE target_schema = 'landing' AND target_table = %s",
                    (name,),
                ).fetchone()
            position = lsn_to_int(row[0]) if row else None
            states[name] = TargetState(digest, position, row[1] if row else None)
        staging = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = '_pgflow_staging' AND c.relkind = 'r'"
        ).fetchone()
    return states, int(staging[0]) if staging else 0


@dataclass(frozen=True)
class SlotState:
    confirmed: int | None
    active: bool
    backfill_slots: list[str]  # temporary slots of live adds still there


def slot_state(admin_uri: str, slot: str) -> SlotState:
    with psycopg.connect(admin_uri, application_name=PROBE_APP) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        ).fetchone()
        others = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s)",
            (slot[:40] + "_backfill_",),
        ).fetchall()
    confirmed = lsn_to_int(row[0]) if row and row[0] else None
    return SlotState(confirmed, bool(row and row[1]), [r[0] for r in others])

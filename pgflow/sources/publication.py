"""The publication a CDC slot streams through, its tables (with column lists), and who owns
it.

pgflow writes the owner (the group or lone pipeline, slot, auto_cleanup) as the publication's
comment: a run checks it before it uses or drops a slot, and `pgflow cdc cleanup` finds what
removed pipelines left by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgflow.config.model import TableName

OWNERSHIP_PREFIX = "pgflow: "


@dataclass(frozen=True)
class Ownership:
    """Written as the publication's comment: which pipeline owns it and its slot, and whether
    `pgflow cdc cleanup` may drop both once the pipeline is gone."""

    pipeline: str
    slot: str
    auto_cleanup: bool

    def comment(self) -> str:
        return OWNERSHIP_PREFIX + json.dumps(
            {"pipeline": self.pipeline, "slot": self.slot, "auto_cleanup": self.auto_cleanup}
        )

    @classmethod
    def parse(cls, comment: str | None) -> Ownership | None:
        if not comment or not comment.startswith(OWNERSHIP_PREFIX):
            return None
        try:
            data = json.loads(comment[len(OWNERSHIP_PREFIX) :])
            return cls(str(data["pipeline"]), str(data["slot"]), bool(data["auto_cleanup"]))
        except (ValueError, KeyError, TypeError):
            return None


Columns = tuple[str, ...] | None  # a publication's column list for a table (None: all)


def published_tables(conn: psycopg.Connection, name: str) -> dict[TableName, Columns] | None:
    """The tables publication `name` publishes, with their column lists; None if it is
    missing."""
    if conn.execute("SELECT FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is None:
        return None
    rows = conn.execute(
        "SELECT n.nspname, c.relname, (SELECT array_agg(a.attname ORDER BY a.attnum)"
        "   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = ANY(r.prattrs))"
        " FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid"
        " JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE p.pubname = %s",
        (name,),
    ).fetchall()
    return {TableName(s, t): (tuple(cols) if cols else None) for s, t, cols in rows}


def create_publication(
    conn: psycopg.Connection, name: str, tables: dict[TableName, Columns], owner: Ownership
) -> None:
    """The publication of a slot's tables, with its owner; partitions' changes arrive as the
    root table's, the table the pipeline names."""
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete,"
                " truncate', publish_via_partition_root = true)"
            ).format(
                sql.Identifier(name),
                sql.SQL(", ").join(_table_item(t, c) for t, c in tables.items()),
            )
        )
        set_owner(conn, name, owner)


def add_table(conn: psycopg.Connection, name: str, table: TableName, columns: Columns) -> None:
    """Publish `table` too (a table joining the group): its changes committed from now on
    are in the stream."""
    conn.execute(
        sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
            sql.Identifier(name), _table_item(table, columns)
        )
    )


def set_columns(conn: psycopg.Connection, name: str, table: TableName, columns: Columns) -> None:
    """Publish another column list of `table` (PostgreSQL 15 changes one by drop and add)."""
    with conn.transaction():
        drop_table(conn, name, table)
        add_table(conn, name, table, columns)


def drop_table(conn: psycopg.Connection, name: str, table: TableName) -> None:
    conn.execute(
        sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(
            sql.Identifier(name), table.identifier()
        )
    )


def set_owner(conn: psycopg.Connection, name: str, owner: Ownership) -> None:
    conn.execute(
        sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(
            sql.Identifier(name), sql.Literal(owner.comment())
        )
    )


def _table_item(table: TableName, columns: Columns) -> sql.Composable:
    if columns is None:
        return table.identifier()
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    return sql.SQL("{} ({})").format(table.identifier(), names)


def publication_owner(conn: psycopg.Connection, name: str) -> Ownership | None:
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    return Ownership.parse(row[0]) if row else None


def owned_publications(conn: psycopg.Connection) -> list[tuple[str, Ownership]]:
    """Publications pgflow created in this database, with their owners."""
    rows = conn.execute(
        "SELECT p.pubname, obj_description(p.oid, 'pg_publication') FROM pg_publication p"
        " ORDER BY 1"
    ).fetchall()
    owned = [(name, Ownership.parse(comment)) for name, comment in rows]
    return [(name, owner) for name, owner in owned if owner is not None]


def drop_publication(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))

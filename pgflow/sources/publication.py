"""The publication a CDC pipeline's slot streams through, and who owns it.

pgflow writes the owner (pipeline, slot, auto_cleanup) as the publication's comment: a run
checks it before dropping a slot to start over, and `pgflow cdc cleanup` finds what removed
pipelines left by it.
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


def ensure_publication(
    conn: psycopg.Connection, name: str, table: TableName, owner: Ownership
) -> bool:
    """Create the publication for `table` (or add the table to it); True when changed."""
    exists = conn.execute("SELECT FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    target = table.identifier()
    changed = False
    if exists is None:
        # Partitions' changes arrive as the root table's, the table the pipeline names.
        conn.execute(
            sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete,"
                " truncate', publish_via_partition_root = true)"
            ).format(sql.Identifier(name), target)
        )
        changed = True
    elif not _publishes(conn, name, table):
        conn.execute(
            sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(name), target)
        )
        changed = True
    conn.execute(
        sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(
            sql.Identifier(name), sql.Literal(owner.comment())
        )
    )
    return changed


def _publishes(conn: psycopg.Connection, name: str, table: TableName) -> bool:
    row = conn.execute(
        "SELECT FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s"
        " AND tablename = %s",
        (name, table.schema, table.name),
    ).fetchone()
    return row is not None


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

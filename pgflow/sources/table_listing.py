"""List every relation of one source schema, for the expansion of a schema-wide spec.

One catalog query for the whole schema (after one for the schema itself), so that a schema of
10,000 tables lists in well under a second: keys and privileges come from correlated
subqueries on pg_index and pg_attribute, never one round trip per table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg

from pgflow.config.model import ConnectionType, RelationKind, SessionSetup
from pgflow.config.wildcards import ListedTable, SchemaListing, TableLister
from pgflow.connections.opening import connection_error, open_conninfo, resolve_conninfo

CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "pgflow specs"

_KINDS: dict[str, RelationKind] = {
    "r": "table",
    "p": "table",  # the partitioned parent; its partitions are never listed (relispartition)
    "v": "view",
    "m": "materialized_view",
    "f": "foreign_table",
}

_SCHEMA_SQL = """
SELECT oid, has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = %s
"""

# The key columns (not INCLUDE ones: k.ord <= indnkeyatts) of an index, in index order.
_KEY_COLUMNS = """
unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE k.ord <= i.indnkeyatts
"""

# Per relation: the primary key, else the first unique index (by name, C collation) that is
# valid, has no expression or predicate, and covers NOT NULL columns only.
_LIST_SQL = f"""
SELECT c.relname, c.relkind,
       coalesce((
         SELECT array_agg(a.attname::text ORDER BY k.ord)
           FROM (SELECT i.* FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                  WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                    AND i.indexprs IS NULL AND i.indpred IS NULL
                    AND (i.indisprimary OR NOT EXISTS (
                          SELECT 1 FROM {_KEY_COLUMNS} AND NOT a.attnotnull))
                  ORDER BY i.indisprimary DESC, ic.relname COLLATE "C"
                  LIMIT 1) AS i
           CROSS JOIN LATERAL {_KEY_COLUMNS}
       ), '{{}}') AS key,
       %(usage)s AND (
         has_table_privilege(c.oid, 'SELECT')
         OR (EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
             AND NOT EXISTS (
               SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')))
       ) AS readable
  FROM pg_class c
 WHERE c.relnamespace = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND NOT c.relispartition
 ORDER BY c.relname COLLATE "C"
"""


def list_schema(conn: psycopg.Connection[Any], connection_id: str, schema: str) -> SchemaListing:
    """Every table, view, materialized view and foreign table of `schema`, sorted by raw name.

    A missing schema gives `exists=False` and no tables. Without USAGE on the schema nothing in
    it is readable. Runs in the caller's transaction (the live lister's is READ ONLY).
    """
    listed_at = datetime.now(UTC).isoformat(timespec="seconds")
    found = conn.execute(_SCHEMA_SQL, (schema,)).fetchone()
    if found is None:
        return SchemaListing(connection_id, schema, False, (), listed_at)
    schema_oid, usage = found
    rows = conn.execute(_LIST_SQL, {"schema": schema_oid, "usage": usage}).fetchall()
    tables = tuple(
        ListedTable(name=name, kind=_KINDS[relkind], key=tuple(key), readable=bool(readable))
        for name, relkind, key, readable in rows
    )
    return SchemaListing(connection_id, schema, True, tables, listed_at)


def live_lister(environ: Mapping[str, str] | None = None) -> TableLister:
    """A TableLister that connects to the source (env `PGFLOW_CONN_<ID>` or Vault, as the
    resource does), lists the schema in a READ ONLY transaction and disconnects.

    Failures raise ConnectionConfigError naming the connection, never carrying its password.
    """
    env = os.environ if environ is None else environ

    def lister(
        connection_id: str,
        connection_type: ConnectionType,
        schema: str,
        session: SessionSetup | None = None,
    ) -> SchemaListing:
        what = f"list schema '{schema}' of"
        with catalog_session(connection_id, connection_type, env, session, what) as conn:
            conn.read_only = True
            with conn.transaction():
                return list_schema(conn, connection_id, schema)

    return lister


@contextmanager
def catalog_session(
    connection_id: str,
    connection_type: ConnectionType,
    environ: Mapping[str, str],
    session: SessionSetup | None,
    what: str,
) -> Iterator[psycopg.Connection[Any]]:
    """A short session on a source for catalog questions at definitions load (connecting as
    the resource does, with the connection's role and settings); a Postgres error raises
    ConnectionConfigError `could not <what> connection '<id>': ...`, without secrets."""
    conninfo = resolve_conninfo(connection_id, connection_type, environ)
    connect = open_conninfo(
        conninfo,
        connection_id,
        connection_type,
        {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": APPLICATION_NAME},
        session=session,
        environ=environ,
    )
    with connect as conn:
        try:
            yield conn
        except psycopg.Error as exc:
            raise connection_error(
                exc, conninfo, f"could not {what} connection '{connection_id}'"
            ) from None

"""Ask a source which tables its pipelines' queries read, for their assets' deps
(config/query_cache.py caches the answer next to the spec).

A query's tables are those its plan reads (views resolved to their tables, as the
`pgflow/source_tables` of its materializations), plus a view an output column is taken from
as it is: the column lineage of a materialization names that view, so its key is a dep too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from pgflow.config.model import ConnectionType, SessionSetup, TableName
from pgflow.config.query_cache import QueryInspector
from pgflow.sources.base import SourceConfigError
from pgflow.sources.query_shape import inspect_query
from pgflow.sources.table_listing import catalog_session


def tables_read(conn: psycopg.Connection[Any], query: str) -> tuple[TableName, ...] | str:
    """The tables `query` reads, in its own READ ONLY transaction; why not, when Postgres
    refuses it (the run reports that again, naming the field)."""
    conn.read_only = True
    try:
        with conn.transaction():
            shape = inspect_query(conn, query)
    except SourceConfigError as exc:
        return str(exc)
    origins = {table for table, _ in shape.origins.values()}
    return tuple(sorted({*shape.tables, *origins}, key=lambda t: (t.schema, t.name)))


def live_query_inspector(environ: Mapping[str, str] | None = None) -> QueryInspector:
    """A QueryInspector connecting as the resource does (env `PGFLOW_CONN_<ID>` or Vault, the
    connection's role and settings); failures raise ConnectionConfigError without secrets."""
    env = os.environ if environ is None else environ

    def inspector(
        connection_id: str,
        connection_type: ConnectionType,
        queries: Sequence[str],
        session: SessionSetup | None = None,
    ) -> dict[str, tuple[TableName, ...] | str]:
        what = "read the plans of the source queries of"
        with catalog_session(connection_id, connection_type, env, session, what) as conn:
            return {query: tables_read(conn, query) for query in queries}

    return inspector

"""What a source and a sink both say: their type, connection, table or Delta path."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from pgflow.config.identifiers import read_identifier
from pgflow.config.model import (
    CONNECTION_TYPES,
    ENDPOINT_TYPES,
    ConnectionType,
    SourceType,
    TableName,
)
from pgflow.config.reader import Section


@dataclass(frozen=True)
class Endpoint:
    type: SourceType | None  # None: missing or not allowed (reported)
    connection_type: ConnectionType
    connection_id: str | None
    path: str | None


def read_endpoint(section: Section) -> Endpoint:
    """`type`, `connection_type`, `connection_id` and `path`, with what each type requires."""
    kind = section.choice("type", ENDPOINT_TYPES, required=True)
    connection_type = section.choice("connection_type", CONNECTION_TYPES, default="env")
    connection_id = section.text("connection_id")
    path = section.text("path")
    if path is not None and any(unicodedata.category(c) == "Cc" for c in path):
        section.problem("path", f"{path!r} holds a control character; write a plain path or URI")
        path = None
    if kind == "postgres" and not connection_id:
        section.problem("connection_id", "is required for type postgres (a connection name)")
    if kind == "delta" and not path:
        section.problem("path", "is required for type delta (a folder or object-store URI)")
    _refuse_session_fields(section, kind, connection_id)
    return Endpoint(kind, connection_type, connection_id, path)


def _refuse_session_fields(section: Section, kind: str | None, connection_id: str | None) -> None:
    """set_role and session_settings belong to a Postgres connection, not to an endpoint."""
    for key in ("set_role", "session_settings"):
        if not section.has(key):
            continue
        section.raw(key)  # reported here, not again as an unknown field
        if kind == "delta":
            section.problem(
                key,
                "applies to Postgres connections only (a Delta table has no database "
                "session, role or settings); remove it",
            )
        else:
            section.problem(
                key,
                f"is a setting of the connection: declare it under `connections: "
                f"{{{connection_id or '<id>'}: {{{key}: ...}}}}` (every session of the "
                f"connection then uses it)",
            )


def read_table(section: Section, required: bool) -> TableName | None:
    """`table: {schema, name}`; None when absent or not valid (reported)."""
    table = section.section("table", required=required)
    if table is None:
        return None
    schema = read_identifier(table, "schema", required=True)
    name = read_identifier(table, "name", required=True)
    table.finish()
    return TableName(schema, name) if schema and name else None

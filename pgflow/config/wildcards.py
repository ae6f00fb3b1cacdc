"""What a schema-wide spec expands against: the tables of one source schema, as listed from the
source catalog or read back from the cache file next to the spec (`catalog_cache.py`).

The config layer never connects: whoever loads the project with a live source passes a
`TableLister` (the sources layer's `table_listing.live_lister`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pgflow.config.model import ConnectionSpec, ConnectionType, RelationKind, SessionSetup


@dataclass(frozen=True)
class ListedTable:
    """One relation of a source schema."""

    name: str  # the raw, case-sensitive identifier
    kind: RelationKind
    # The primary key, else the first (by index name) unique index on NOT NULL columns with no
    # expression or predicate; () when the table has neither.
    key: tuple[str, ...] = ()
    readable: bool = True  # the connecting role may SELECT every listed column of it
    # When a refresh found it gone from the source (ISO 8601, UTC): kept in the cache so that
    # its asset stays and reports the drop, never silently leaves the warehouse.
    dropped_at: str | None = None


@dataclass(frozen=True)
class SchemaListing:
    """Every relation of one schema of one source connection, at one moment."""

    connection_id: str
    schema: str
    exists: bool  # False: the schema does not exist on the source
    tables: tuple[ListedTable, ...]
    listed_at: str  # ISO 8601, UTC

    @property
    def cache_key(self) -> tuple[str, str]:
        return (self.connection_id, self.schema)


class TableLister(Protocol):
    """Lists one schema of a source connection (connects; raises ConnectionConfigError or a
    psycopg error when the source cannot be reached)."""

    def __call__(
        self,
        connection_id: str,
        connection_type: ConnectionType,
        schema: str,
        session: SessionSetup | None = None,
    ) -> SchemaListing: ...


def with_sessions(lister: TableLister, declared: Mapping[str, ConnectionSpec]) -> TableLister:
    """`lister` listing as the declared connection's role, with its settings (which tables
    are readable depends on the role)."""

    def listing(
        connection_id: str,
        connection_type: ConnectionType,
        schema: str,
        session: SessionSetup | None = None,
    ) -> SchemaListing:
        spec = declared.get(connection_id)
        session = session or (spec.session if spec is not None else None)
        if session:
            return lister(connection_id, connection_type, schema, session=session)
        return lister(connection_id, connection_type, schema)

    return listing

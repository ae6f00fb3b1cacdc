"""Row changes of many tables from ONE slot's pgoutput stream, routed to the table they are of.

The stream of a shared slot carries every table of its publication in commit order. Each
change becomes the event of its table (see changes.py: upserts, removals, truncations, the
table's shape) tagged with the table's index; each Commit becomes one TransactionEnd for all.
A table skips the transactions it already holds: those committed before its own position
(`applied_upto`), which differs per table (a table backfilled later starts later).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from pgflow.config.model import TableName
from pgflow.sources.changes import (
    ChangeEvent,
    RelationSeen,
    Removal,
    TransactionEnd,
    Truncation,
    Upsert,
    key_positions,
    update_events,
)
from pgflow.sources.pgoutput import decode
from pgflow.sources.pgoutput_messages import (
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
)


@dataclass(frozen=True)
class StreamedTable:
    """A table whose changes the stream routes: its name, sink key and position."""

    table: TableName
    key: tuple[str, ...]
    applied_upto: int  # transactions committed before this LSN are already applied


Routed = tuple[int, ChangeEvent] | TransactionEnd


class _Table:
    __slots__ = ("applied_upto", "index", "key", "key_positions")

    def __init__(self, index: int, spec: StreamedTable) -> None:
        self.index = index
        self.key = spec.key
        self.applied_upto = spec.applied_upto
        self.key_positions: tuple[int, ...] = ()


def group_changes(messages: Iterable[bytes], tables: Sequence[StreamedTable]) -> Iterator[Routed]:
    """(table index, event) for the tables' changes; a TransactionEnd for every commit.
    Changes of tables not in `tables` are dropped; a table that failed is the consumer's to
    ignore."""
    by_name = {(t.table.schema, t.table.name): _Table(i, t) for i, t in enumerate(tables)}
    by_oid: dict[int, _Table] = {}
    final_lsn, commit_time = 0, datetime.min
    for count, data in enumerate(messages, 1):
        message = decode(data)
        kind = type(message)
        if kind is Begin:
            assert isinstance(message, Begin)
            final_lsn, commit_time = message.final_lsn, message.commit_time
            continue
        if kind is Commit:
            assert isinstance(message, Commit)
            yield TransactionEnd(message.end_lsn, message.commit_time, count)
        elif kind is Relation:
            assert isinstance(message, Relation)
            table = by_name.get((message.namespace or "pg_catalog", message.name))
            if table is not None:
                # Sent once per stream, possibly inside a skipped transaction: always track it.
                by_oid[message.oid] = table
                table.key_positions = key_positions(message, table.key)
                yield table.index, RelationSeen(message)
        elif kind is Truncate:
            assert isinstance(message, Truncate)
            for oid in message.relation_oids:
                table = by_oid.get(oid)
                if table is not None and final_lsn >= table.applied_upto:
                    yield table.index, Truncation(commit_time)
        else:
            yield from _row_change(message, by_oid, final_lsn, commit_time)


def _row_change(
    message: object, by_oid: dict[int, _Table], final_lsn: int, commit_time: datetime
) -> Iterator[tuple[int, ChangeEvent]]:
    if isinstance(message, Insert):
        table = by_oid.get(message.relation_oid)
        if table is not None and final_lsn >= table.applied_upto:
            yield table.index, Upsert(message.new, None)
    elif isinstance(message, Update):
        table = by_oid.get(message.relation_oid)
        if table is not None and final_lsn >= table.applied_upto:
            for event in update_events(message, table.key_positions):
                yield table.index, event
    elif isinstance(message, Delete):
        table = by_oid.get(message.relation_oid)
        if table is not None and final_lsn >= table.applied_upto:
            yield table.index, Removal(message.old, commit_time)

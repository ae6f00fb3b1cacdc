"""Row changes of one table, from a slot's pgoutput messages, in commit order.

Turns the protocol (Begin, Relation, Insert/Update/Delete, Truncate, Commit) into what a sink
applies: upserts, deletes, truncates and transaction ends carrying the LSN to store. A
primary-key change becomes a delete of the old key and an upsert of the new one. Whole
transactions that end at or before `applied_upto` were applied by an earlier run (which died
between its commit and the slot advance) and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pgflow.config.model import TableName
from pgflow.sources.pgoutput import decode
from pgflow.sources.pgoutput_messages import (
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    Value,
)


@dataclass(frozen=True)
class RelationSeen:
    """The table's shape as the stream knows it; sent before its first change and on change."""

    relation: Relation


@dataclass(frozen=True)
class Upsert:
    values: tuple[Value, ...]  # in relation column order; UNCHANGED for untouched TOAST values
    old_key_row: tuple[Value, ...] | None  # the old row's identity when its key changed


@dataclass(frozen=True)
class Removal:
    key_row: tuple[Value, ...]  # identity columns set, others None (all set with FULL)
    commit_time: datetime


@dataclass(frozen=True)
class Truncation:
    commit_time: datetime


@dataclass(frozen=True)
class TransactionEnd:
    end_lsn: int  # store this: the next transaction to apply commits at or after it
    commit_time: datetime
    messages: int = 0  # protocol messages read so far, this one's Commit included


ChangeEvent = RelationSeen | Upsert | Removal | Truncation | TransactionEnd


def table_changes(
    messages: Iterable[bytes], table: TableName, key: tuple[str, ...], applied_upto: int
) -> Iterator[ChangeEvent]:
    """Events for `table` only; `key` names the columns that identify a row in the sink."""
    relation: Relation | None = None
    key_positions: tuple[int, ...] = ()
    skipping = False
    commit_time: datetime | None = None
    for count, data in enumerate(messages, 1):
        message = decode(data)
        if isinstance(message, Begin):
            skipping = message.final_lsn < applied_upto
            commit_time = message.commit_time
        elif isinstance(message, Relation):
            # Sent once per read, possibly inside a skipped transaction: always track it.
            if (message.namespace or "pg_catalog", message.name) == (table.schema, table.name):
                relation = message
                key_positions = _positions(message, key)
                yield RelationSeen(message)
        elif skipping:
            continue
        elif isinstance(message, Commit):
            yield TransactionEnd(message.end_lsn, message.commit_time, count)
        elif relation is None:
            continue  # a change of another table in the publication
        elif isinstance(message, Insert) and message.relation_oid == relation.oid:
            yield Upsert(message.new, None)
        elif isinstance(message, Update) and message.relation_oid == relation.oid:
            yield from _update(message, key_positions)
        elif isinstance(message, Delete) and message.relation_oid == relation.oid:
            assert commit_time is not None
            yield Removal(message.old, commit_time)
        elif isinstance(message, Truncate) and relation.oid in message.relation_oids:
            assert commit_time is not None
            yield Truncation(commit_time)


def batches(
    events: Iterator[ChangeEvent], max_messages: int
) -> Iterator[tuple[RelationSeen | None, Iterator[ChangeEvent]]]:
    """Cut one read's events into batches of whole transactions, the way the server cuts a
    read at `upto_nchanges`: a batch ends with the transaction that reaches `max_messages`
    protocol messages. Each batch comes with the table's shape before it (a Relation is sent
    once per read). Consume each batch before asking for the next."""
    state = _Cut(max_messages)
    while not state.exhausted:
        yield state.relation, state.batch(events)


class _Cut:
    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self.relation: RelationSeen | None = None
        self.start = 0  # messages before this batch
        self.exhausted = False

    def batch(self, events: Iterator[ChangeEvent]) -> Iterator[ChangeEvent]:
        for event in events:
            if isinstance(event, RelationSeen):
                self.relation = event
            yield event
            if (
                isinstance(event, TransactionEnd)
                and event.messages - self.start >= self.max_messages
            ):
                self.start = event.messages
                return
        self.exhausted = True


def _update(message: Update, key_positions: tuple[int, ...]) -> Iterator[ChangeEvent]:
    old = message.old
    if old is not None and any(old[i] != message.new[i] for i in key_positions):
        yield Upsert(message.new, old)
    else:
        yield Upsert(message.new, None)


def _positions(relation: Relation, key: tuple[str, ...]) -> tuple[int, ...]:
    names = [c.name for c in relation.columns]
    missing = [k for k in key if k not in names]
    if missing:
        raise ValueError(
            f"sink.strategy.unique_key column(s) {', '.join(missing)} are not in the replicated "
            f"table {relation.namespace}.{relation.name} (columns: {', '.join(names)})"
        )
    return tuple(names.index(k) for k in key)

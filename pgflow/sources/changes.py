"""The row changes a sink applies, as the slot's pgoutput messages become them.

Upserts, deletes, truncates and transaction ends carrying the LSN to store (group_changes.py
routes a stream's messages into them, per table). A primary-key change becomes a delete of the
old key and an upsert of the new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pgflow.sources.pgoutput_messages import (
    Relation,
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


def update_events(message: Update, key_positions: tuple[int, ...]) -> Iterator[ChangeEvent]:
    old = message.old
    if old is not None and any(old[i] != message.new[i] for i in key_positions):
        yield Upsert(message.new, old)
    else:
        yield Upsert(message.new, None)


def key_positions(relation: Relation, key: tuple[str, ...]) -> tuple[int, ...]:
    names = [c.name for c in relation.columns]
    missing = [k for k in key if k not in names]
    if missing:
        raise ValueError(
            f"sink.strategy.unique_key column(s) {', '.join(missing)} are not in the replicated "
            f"table {relation.namespace}.{relation.name} (columns: {', '.join(names)})"
        )
    return tuple(names.index(k) for k in key)

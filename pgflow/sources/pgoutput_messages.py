"""The messages ``pgoutput`` writes (protocol version 1), as ``pgoutput.decode`` returns them.

LSNs are 64-bit integers, times are UTC; column values are text (``str``), binary (``bytes``,
with option ``binary 'true'``), NULL (``None``) or UNCHANGED (a TOASTed value the change did
not touch, which the server does not send).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Final, Literal, TypeAlias


class Unchanged(Enum):
    """A TOASTed column value the server did not send because the change did not touch it."""

    TOAST = "u"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged.TOAST

Value: TypeAlias = str | bytes | Literal[Unchanged.TOAST] | None


@dataclass(frozen=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str  # '' for pg_catalog
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int  # the LSN of the commit record (Commit.commit_lsn)
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # the end of the commit record: where to resume after this transaction
    commit_time: datetime


@dataclass(frozen=True)
class Origin:
    lsn: int  # the commit LSN on the origin server
    name: str


@dataclass(frozen=True)
class TypeInfo:
    oid: int
    namespace: str  # '' for pg_catalog
    name: str


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: tuple[Value, ...]


@dataclass(frozen=True)
class Update:
    relation_oid: int
    old: tuple[Value, ...] | None  # None unless the key changed or the identity is FULL
    old_kind: str | None  # 'K' key columns only (others None), 'O' whole old row, or None
    new: tuple[Value, ...]


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old: tuple[Value, ...]
    old_kind: str  # 'K' key columns only (others None) or 'O' whole old row


@dataclass(frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message: TypeAlias = (
    Begin
    | Commit
    | Origin
    | Relation
    | TypeInfo
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
)

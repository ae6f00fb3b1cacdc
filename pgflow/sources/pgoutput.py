"""A pure decoder for PostgreSQL logical replication messages written by ``pgoutput``.

Covers protocol version 1 (``proto_version '1'``, no streaming of in-progress transactions):
Begin, Commit, Origin, Relation, Type, Insert, Update, Delete, Truncate and logical decoding
Message. Column values arrive as text (the output function of each column's type, run by the
decoding backend with *its* session settings), so text columns decode to ``str``; the binary
column kind (option ``binary 'true'``, which PostgreSQL 15 honours even with protocol 1: each
type's send function) decodes to ``bytes``.
Streaming (``S``/``E``/``c``/``A``) and two-phase messages are not protocol 1 and are rejected.

Reference: "Logical Replication Message Formats" in the PostgreSQL documentation. Integers are
big-endian, strings NUL-terminated, timestamps microseconds since 2000-01-01 UTC and LSNs 64-bit.

``decode`` takes one message (the ``data`` of a ``pg_logical_slot_*_binary_changes`` row or the
payload of an XLogData frame) and parses it with precompiled structs at offsets into the bytes,
so the only copies are the values themselves. Malformed input raises ``PgoutputError``. The
message types are in pgoutput_messages.py.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pgflow.sources.pgoutput_messages import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    RelationColumn,
    Truncate,
    TypeInfo,
    Update,
    Value,
)


class PgoutputError(ValueError):
    """A message that is not valid pgoutput protocol 1: unknown type, truncated or garbled."""

    def __init__(self, message_type: str | None, offset: int, reason: str) -> None:
        name = _NAMES.get(message_type, "unknown") if message_type else "empty"
        label = f"{name} ({message_type!r})" if message_type else name
        super().__init__(f"pgoutput {label} message, offset {offset}: {reason}")
        self.message_type = message_type
        self.offset = offset
        self.reason = reason


_NAMES: Final = {
    "B": "Begin",
    "C": "Commit",
    "O": "Origin",
    "R": "Relation",
    "Y": "Type",
    "I": "Insert",
    "U": "Update",
    "D": "Delete",
    "T": "Truncate",
    "M": "Message",
}

_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")
_U64 = struct.Struct("!Q")
_BEGIN = struct.Struct("!QqI")  # final LSN, commit time, xid
_COMMIT = struct.Struct("!BQQq")  # flags, commit LSN, end LSN, commit time
_RELATION_TAIL = struct.Struct("!BH")  # replica identity, column count
_COLUMN_TYPE = struct.Struct("!Ii")  # type OID, type modifier
_TRUNCATE_HEAD = struct.Struct("!IB")  # relation count, options
_MESSAGE_HEAD = struct.Struct("!BQ")  # flags, LSN

_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_TRUNCATE_CASCADE = 1
_TRUNCATE_RESTART_IDENTITY = 2
_MESSAGE_TRANSACTIONAL = 1
_TEXT, _NULL, _TOAST, _BINARY = b"t"[0], b"n"[0], b"u"[0], b"b"[0]
_LSN_TEXT = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


class _Invalid(Exception):
    """Garbled data found while parsing; ``decode`` turns it into a PgoutputError."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


class _Reader:
    """A cursor over one message. ``pos`` only advances past fields read successfully."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def one(self, layout: struct.Struct) -> int:
        value: int
        (value,) = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return value

    def marker(self) -> str:
        value = chr(self.data[self.pos])
        self.pos += 1
        return value

    def string(self) -> str:
        data, start = self.data, self.pos
        try:
            end = data.index(b"\0", start)
        except ValueError:
            raise _Invalid(start, "unterminated string") from None
        value = _utf8(data, start, end)
        self.pos = end + 1
        return value

    def take(self, length: int) -> bytes:
        start = self.pos
        end = start + length
        if length < 0 or end > len(self.data):
            raise _Invalid(start, f"{length} bytes announced, {len(self.data) - start} left")
        self.pos = end
        return self.data[start:end]


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode one pgoutput message; raise PgoutputError if it is not valid protocol 1.

    Other bytes-like objects (bytearray, memoryview) are accepted and copied to bytes once.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if not data:
        raise PgoutputError(None, 0, "no data")
    message_type = chr(data[0])
    parse = _PARSERS.get(message_type)
    if parse is None:
        raise PgoutputError(message_type, 0, f"unknown message type {message_type!r}")
    reader = _Reader(data, 1)
    try:
        message = parse(reader)
    except _Invalid as exc:
        raise PgoutputError(message_type, exc.offset, exc.reason) from None
    except (struct.error, IndexError):
        reason = f"truncated: the data ends at {len(data)} bytes"
        raise PgoutputError(message_type, reader.pos, reason) from None
    if reader.pos != len(data):
        reason = f"{len(data) - reader.pos} unexpected bytes after the message"
        raise PgoutputError(message_type, reader.pos, reason)
    return message


def lsn_to_int(text: str) -> int:
    """'16/B374D848' (the pg_lsn text form) -> 0x16B374D848."""
    match = _LSN_TEXT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an LSN (expected 'X/Y' in hex): {text!r}")
    return int(match[1], 16) << 32 | int(match[2], 16)


def lsn_to_text(value: int) -> str:
    """0x16B374D848 -> '16/B374D848', as PostgreSQL prints a pg_lsn."""
    if not 0 <= value < 2**64:
        raise ValueError(f"an LSN is an unsigned 64-bit integer, got {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _utf8(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode()
    except UnicodeDecodeError as exc:
        raise _Invalid(start + exc.start, "invalid UTF-8") from None


def _timestamp(microseconds: int, offset: int) -> datetime:
    try:
        return _PG_EPOCH + timedelta(microseconds=microseconds)
    except OverflowError:
        raise _Invalid(offset, f"timestamp out of range: {microseconds}") from None


def _tuple(reader: _Reader) -> tuple[Value, ...]:
    """TupleData: a column count, then per column a kind byte and for 't'/'b' the value."""
    data = reader.data
    (count,) = _U16.unpack_from(data, reader.pos)
    pos = reader.pos + 2
    size = len(data)
    length_at = _I32.unpack_from  # bound once: this loop runs per column of every change
    values: list[Value] = []
    append = values.append
    start = pos
    try:
        for _ in range(count):
            kind = data[pos]
            if kind in (_TEXT, _BINARY):
                (length,) = length_at(data, pos + 1)
                start = pos + 5
                pos = start + length
                if length < 0 or pos > size:
                    pos = start - 4
                    raise _Invalid(pos, f"value of {length} bytes, {size - start} left")
                # Decode inline (one call per change, not per column); errors are rare.
                append(data[start:pos].decode() if kind == _TEXT else data[start:pos])
            elif kind == _NULL:
                append(None)
                pos += 1
            elif kind == _TOAST:
                append(UNCHANGED)
                pos += 1
            else:
                raise _Invalid(pos, f"unknown column kind {chr(kind)!r}")
    except UnicodeDecodeError as exc:
        raise _Invalid(start + exc.start, "invalid UTF-8") from None
    finally:
        reader.pos = pos  # where parsing stopped: the offset reported on errors
    return tuple(values)


def _expect(reader: _Reader, marker: str, expected: str) -> None:
    if marker != expected:
        raise _Invalid(reader.pos - 1, f"expected {expected!r}, found {marker!r}")


def _old_kind(reader: _Reader) -> str:
    kind = reader.marker()
    if kind not in ("K", "O"):
        raise _Invalid(reader.pos - 1, f"expected 'K' or 'O', found {kind!r}")
    return kind


def _begin(reader: _Reader) -> Begin:
    start = reader.pos
    final_lsn, commit_time, xid = reader.unpack(_BEGIN)
    return Begin(final_lsn, _timestamp(commit_time, start + 8), xid)


def _commit(reader: _Reader) -> Commit:
    start = reader.pos
    flags, commit_lsn, end_lsn, commit_time = reader.unpack(_COMMIT)
    return Commit(flags, commit_lsn, end_lsn, _timestamp(commit_time, start + 17))


def _origin(reader: _Reader) -> Origin:
    return Origin(reader.one(_U64), reader.string())


def _relation(reader: _Reader) -> Relation:
    oid = reader.one(_U32)
    namespace, name = reader.string(), reader.string()
    identity, count = reader.unpack(_RELATION_TAIL)
    columns = tuple(_relation_column(reader) for _ in range(count))
    return Relation(oid, namespace, name, chr(identity), columns)


def _relation_column(reader: _Reader) -> RelationColumn:
    flags = reader.one(_U8)
    name = reader.string()
    type_oid, type_modifier = reader.unpack(_COLUMN_TYPE)
    return RelationColumn(name, type_oid, type_modifier, bool(flags & 1))


def _type(reader: _Reader) -> TypeInfo:
    return TypeInfo(reader.one(_U32), reader.string(), reader.string())


def _insert(reader: _Reader) -> Insert:
    oid = reader.one(_U32)
    _expect(reader, reader.marker(), "N")
    return Insert(oid, _tuple(reader))


def _update(reader: _Reader) -> Update:
    oid = reader.one(_U32)
    marker = reader.marker()
    old: tuple[Value, ...] | None = None
    old_kind: str | None = None
    if marker in ("K", "O"):
        old_kind, old = marker, _tuple(reader)
        marker = reader.marker()
    _expect(reader, marker, "N")
    return Update(oid, old, old_kind, _tuple(reader))


def _delete(reader: _Reader) -> Delete:
    oid = reader.one(_U32)
    old_kind = _old_kind(reader)
    return Delete(oid, _tuple(reader), old_kind)


def _truncate(reader: _Reader) -> Truncate:
    count, options = reader.unpack(_TRUNCATE_HEAD)
    oids = struct.unpack(f"!{count}I", reader.take(4 * count))
    cascade = bool(options & _TRUNCATE_CASCADE)
    return Truncate(oids, cascade, bool(options & _TRUNCATE_RESTART_IDENTITY))


def _message(reader: _Reader) -> LogicalMessage:
    flags, lsn = reader.unpack(_MESSAGE_HEAD)
    prefix = reader.string()
    content = reader.take(reader.one(_I32))
    return LogicalMessage(bool(flags & _MESSAGE_TRANSACTIONAL), lsn, prefix, content)


_PARSERS: Final[dict[str, Callable[[_Reader], Message]]] = {
    "B": _begin,
    "C": _commit,
    "O": _origin,
    "R": _relation,
    "Y": _type,
    "I": _insert,
    "U": _update,
    "D": _delete,
    "T": _truncate,
    "M": _message,
}

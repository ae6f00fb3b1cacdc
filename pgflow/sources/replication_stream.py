"""Reading a logical slot over the streaming replication protocol (START_REPLICATION).

The server decodes each change once and pushes it; the slot moves when we report a flushed
position in a standby status update, so no peek (decode) + advance (decode again). psycopg 3
has no replication API: the copy-both stream is read and written through the low-level
`pgconn` of a `replication="database"` connection (simple query protocol only).

Frames (PostgreSQL docs, "Streaming Replication Protocol"), big-endian:
  server 'w' XLogData:   dataStart u64, walEnd u64, sendTime i64, then one pgoutput message
  server 'k' keepalive:  walEnd u64, sendTime i64, replyRequested u8
  client 'r' status:     write u64, flush u64, apply u64, sendTime i64, replyRequested u8
"""

from __future__ import annotations

import select
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from types import TracebackType

import psycopg
from psycopg import pq, sql

from pgflow.connections.errors import is_transient
from pgflow.sources.cdc import (
    ConnectSource,
    ReplicationError,
    SlotInUse,
    advance_slot,
    slot_info,
)
from pgflow.sources.pgoutput import lsn_to_text
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS
from pgflow.sources.replication_errors import (
    StreamLost,
    error_message,
    error_text,
    replication_error,
    sqlstate,
)

_XLOGDATA, _KEEPALIVE = ord("w"), ord("k")
_BEGIN, _COMMIT = ord("B"), ord("C")
_PAYLOAD_AT = 25  # 'w' + dataStart + walEnd + sendTime
_WAL_END = struct.Struct("!Q")  # walEnd: offset 9 in 'w', 1 in 'k'; Begin.final_lsn: 1
_STATUS = struct.Struct("!cQQQqB")
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_CHECK_EVERY = 512  # messages between clock reads while data flows
EXIT_TIMEOUT = 5.0  # seconds __exit__ drains the stream before it just closes it
# Seconds an undrained exit waits for the walsender to let the slot go (it exits a moment
# after the close), however short the drain was: else the final confirmation is lost.
RELEASE_TIMEOUT = 10.0


class ReplicationStream:
    """One START_REPLICATION session on a logical slot (pgoutput, proto_version 1)."""

    def __init__(
        self,
        connect: ConnectSource,
        slot: str,
        publication: str,
        start_lsn: int,
        upto_lsn: int,
        *,
        status_interval: float = 10.0,
        idle_timeout: float = 1.0,
    ) -> None:
        self._connect = connect
        self._slot = slot
        self._publication = publication
        self._start_lsn = start_lsn
        self._upto = upto_lsn
        self._status_interval = status_interval
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._confirmed = start_lsn
        self._wal_end = 0
        self._stack = ExitStack()
        self._conn: psycopg.Connection | None = None
        self._pgconn: pq.abc.PGconn | None = None
        self._streaming = False  # in copy-both mode: __exit__ must end it
        self._done = False  # messages() reached upto_lsn
        self._next_status = 0.0

    @property
    def server_wal_end(self) -> int:
        """The last walEnd the server reported (0 before its first frame)."""
        return self._wal_end

    @property
    def backend_pid(self) -> int | None:
        """The walsender's PID while the stream is open (for logs and health checks)."""
        return None if self._conn is None or self._conn.closed else self._conn.info.backend_pid

    def confirm(self, lsn: int) -> None:
        """Report `lsn` as applied (thread-safe); sent with the next status update."""
        with self._lock:
            self._confirmed = max(self._confirmed, lsn)

    def __enter__(self) -> ReplicationStream:
        try:
            conn = self._stack.enter_context(self._connect(replication="database", autocommit=True))
            self._conn, self._pgconn = conn, conn.pgconn
            self._run(_settings_command(conn), pq.ExecStatus.COMMAND_OK)
            self._run(self._start_command(conn), pq.ExecStatus.COPY_BOTH)
        except BaseException:
            if self._conn is not None:
                self._conn.close()
            self._stack.close()
            raise
        self._streaming = True
        self._next_status = time.monotonic() + self._status_interval
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            drained = True
            if self._streaming:
                self._streaming = False
                drained = self._end_copy(time.monotonic() + EXIT_TIMEOUT)
        except (psycopg.Error, OSError, TimeoutError, ReplicationError) as err:
            # The original exception, if any, is the one the caller needs to see.
            if exc is None:
                failed = StreamLost if is_transient(err) else ReplicationError
                raise failed(
                    f"replication slot {self._slot}: could not end the stream cleanly, the last "
                    f"confirmed position may not have reached the server: {error_text(err)}"
                ) from None
        finally:
            # Closed here, not by the connection's own exit: after a failed end it would
            # COMMIT on a connection still in copy mode and raise over the real error.
            if self._conn is not None:
                self._conn.close()
            self._stack.close()
        if not drained:
            self._confirm_by_sql(exc)

    def _confirm_by_sql(self, exc: BaseException | None) -> None:
        """Move the slot to the confirmed position once the walsender let it go.

        Needed after an undrained end: a walsender busy sending a transaction reads no
        replies, and our close makes it exit before it sees the final status.
        """
        with self._lock:
            confirmed = self._confirmed
        try:
            with self._connect(autocommit=True) as conn:
                wait_slot_released(conn, self._slot, RELEASE_TIMEOUT)
                info = slot_info(conn, self._slot)
                if info is not None and (info.confirmed_flush or 0) < confirmed:
                    advance_slot(conn, self._slot, confirmed)
        except ReplicationError:
            if exc is None:
                raise
        except psycopg.Error as err:
            if exc is None:
                raise self._error(err.sqlstate, error_text(err), is_transient(err)) from None

    def messages(self) -> Iterator[bytes]:
        """pgoutput payloads of whole transactions committed before upto_lsn, in order."""
        pgconn = self._pgconn
        if pgconn is None or not self._streaming:
            raise RuntimeError("ReplicationStream.messages() needs an open stream (use `with`)")
        in_transaction = False
        countdown = _CHECK_EVERY
        idle_since = time.monotonic()
        reply_asked = seen = False
        while not self._done:
            n, frame = self._read(pgconn)
            if n > 0:
                kind = frame[0]
                if kind == _XLOGDATA:
                    tag = frame[_PAYLOAD_AT]
                    if tag == _BEGIN:
                        if _WAL_END.unpack_from(frame, _PAYLOAD_AT + 1)[0] >= self._upto:
                            self._done = True  # committed at or after upto: the next run's
                            return
                        in_transaction = True
                    elif tag == _COMMIT:
                        in_transaction = False
                    self._wal_end = _WAL_END.unpack_from(frame, 9)[0]
                    seen = True
                    yield bytes(frame[_PAYLOAD_AT:])
                    countdown -= 1
                    if not countdown:
                        countdown = _CHECK_EVERY
                        self._status_if_due()
                elif kind == _KEEPALIVE:
                    self._wal_end = _WAL_END.unpack_from(frame, 1)[0]
                    reply_asked, idle_since = False, time.monotonic()
                    if frame[17]:
                        self._send_status(reply=False)
                    if not in_transaction and self._wal_end >= self._upto:
                        self._done = True
                        return
                else:
                    unexpected = chr(kind)
                    raise ReplicationError(
                        f"replication slot {self._slot}: unexpected frame {unexpected!r}"
                    )
            elif n == 0:
                if seen:  # data came since the last wait: not idle
                    idle_since, seen = time.monotonic(), False
                reply_asked = self._wait(pgconn, idle_since, reply_asked)
            else:
                self._stream_ended(pgconn)

    def _read(self, pgconn: pq.abc.PGconn) -> tuple[int, memoryview]:
        try:
            return pgconn.get_copy_data(1)
        except psycopg.Error as err:
            self._streaming = False
            raise self._error(err.sqlstate, error_text(err), is_transient(err)) from None

    def _status_if_due(self) -> None:
        if time.monotonic() >= self._next_status:
            self._send_status(reply=False)

    def keep_alive(self) -> None:
        """Send a status update if one is due. For the reading thread while its consumer
        makes it wait between messages: the server ends a stream that says nothing for
        wal_sender_timeout (60 s by default). Not thread-safe, unlike confirm()."""
        if self._streaming:
            self._status_if_due()

    def _wait(self, pgconn: pq.abc.PGconn, idle_since: float, reply_asked: bool) -> bool:
        """No data buffered: keep the server informed, sleep on the socket, read input."""
        now = time.monotonic()
        if now >= self._next_status:
            self._send_status(reply=False)
        if not reply_asked and now - idle_since >= self._idle_timeout:
            # The server answers with a keepalive carrying its walEnd: how an idle slot learns
            # it has caught up to upto_lsn.
            self._send_status(reply=True)
            reply_asked = True
        wake = self._next_status
        if not reply_asked:
            wake = min(wake, idle_since + self._idle_timeout)
        select.select([pgconn.socket], [], [], max(0.0, wake - now))
        try:
            pgconn.consume_input()
        except psycopg.Error as err:
            self._streaming = False
            raise self._error(err.sqlstate, error_text(err), is_transient(err)) from None
        return reply_asked

    def _send_status(self, *, reply: bool) -> None:
        with self._lock:
            lsn = self._confirmed
        now_us = time.time_ns() // 1000 - _PG_EPOCH_US
        frame = _STATUS.pack(b"r", lsn, lsn, lsn, now_us, reply)
        self._put(frame, time.monotonic() + EXIT_TIMEOUT)
        self._next_status = time.monotonic() + self._status_interval

    def _put(self, frame: bytes, deadline: float) -> None:
        pgconn = self._require()
        try:
            while not pgconn.put_copy_data(frame):
                _wait_socket(pgconn, deadline, write=True)
            self._flush(deadline)
        except (psycopg.Error, TimeoutError) as err:
            self._streaming = False
            raise self._error(
                getattr(err, "sqlstate", None), error_text(err), is_transient(err)
            ) from None

    def _flush(self, deadline: float) -> None:
        pgconn = self._require()
        while pgconn.flush():
            _wait_socket(pgconn, deadline, write=True)

    def _end_copy(self, deadline: float) -> bool:
        """Final status, CopyDone, then drain until the server ends the copy and the command.

        Past `deadline` we stop draining (False) and the caller closes the connection: after
        a CopyDone, PostgreSQL still sends the rest of a transaction it is decoding, which can
        take longer than is worth reading.
        """
        pgconn = self._require()
        self._send_status(reply=False)
        while not pgconn.put_copy_end():
            _wait_socket(pgconn, deadline, write=True)
        self._flush(deadline)
        try:
            while True:  # frames still in flight after our CopyDone are dropped
                n, _ = pgconn.get_copy_data(1)
                if n == -1:
                    break
                if n == 0:
                    _wait_socket(pgconn, deadline, write=False)
                    pgconn.consume_input()
            while True:
                while pgconn.is_busy():
                    _wait_socket(pgconn, deadline, write=False)
                    pgconn.consume_input()
                if pgconn.get_result() is None:
                    return True
        except TimeoutError:
            return False

    def _stream_ended(self, pgconn: pq.abc.PGconn) -> None:
        """The server left copy mode on its own: always an error here."""
        self._streaming = False
        result = pgconn.get_result()
        while pgconn.get_result() is not None:
            pass
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            raise self._error(sqlstate(result), error_message(result))
        upto = lsn_to_text(self._upto)
        raise ReplicationError(
            f"replication slot {self._slot}: the server ended the stream before {upto}"
        )

    def _run(self, command: bytes, expected: pq.ExecStatus) -> None:
        result = self._require().exec_(command)
        if result.status != expected:
            raise self._error(sqlstate(result), error_message(result))

    def _require(self) -> pq.abc.PGconn:
        assert self._pgconn is not None, "used inside `with`"
        return self._pgconn

    def _start_command(self, conn: psycopg.Connection) -> bytes:
        # publication_names is itself a list of identifiers, parsed by the server: quote the
        # name inside the literal.
        publications = sql.Identifier(self._publication).as_string(conn)
        command = sql.SQL(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {},"
            " messages 'false')"
        ).format(
            sql.Identifier(self._slot),
            sql.SQL(lsn_to_text(self._start_lsn)),
            sql.Literal(publications),
        )
        return command.as_bytes(conn)

    def _error(self, sqlstate: str | None, message: str, lost: bool = False) -> ReplicationError:
        return replication_error(self._slot, self._publication, sqlstate, message, lost=lost)


def wait_slot_released(conn: psycopg.Connection, slot: str, timeout: float = 10.0) -> None:
    """Wait until no backend holds `slot` (its walsender exits a moment after we close);
    raise SlotInUse if one still does after `timeout` seconds. A missing slot is released."""
    deadline = time.monotonic() + timeout
    while True:
        info = slot_info(conn, slot)
        if info is None or info.active_pid is None:
            return
        if time.monotonic() >= deadline:
            raise SlotInUse(
                f"replication slot {slot} is still held by backend PID {info.active_pid} "
                f"{timeout:g}s after its stream closed"
            )
        time.sleep(0.02)


def _settings_command(conn: psycopg.Connection) -> bytes:
    """SETs for the walsender: its output functions render the values pgoutput sends."""
    statements = [
        sql.SQL("SET {} TO {}").format(sql.Identifier(name), sql.Literal(value))
        for name, value in PORTABLE_TEXT_SETTINGS.items()
    ]
    return sql.SQL("; ").join(statements).as_bytes(conn)


def _wait_socket(pgconn: pq.abc.PGconn, deadline: float, *, write: bool) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the server did not answer in time")
    sockets = [pgconn.socket]
    select.select([] if write else sockets, sockets if write else [], [], remaining)

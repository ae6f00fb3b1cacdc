"""The server's errors while streaming a logical slot, said with their fix (the server's
own words kept), for replication_stream.py."""

from __future__ import annotations

from psycopg import pq

from pgflow.connections.errors import TRANSIENT_SQLSTATES
from pgflow.sources.cdc import RESNAPSHOT, ReplicationError, SlotInUse


class StreamLost(ReplicationError):
    """The connection or the server went away mid-stream (a restart, a terminated walsender):
    retried, and the next attempt resumes from the positions the sinks stored."""

    transient = True


def replication_error(
    slot: str, publication: str, sqlstate: str | None, message: str, *, lost: bool = False
) -> ReplicationError:
    """The server's error during START_REPLICATION or streaming, said with its fix; `lost`:
    the client lost the connection."""
    said = f"(server: {message})"
    if sqlstate == "55006" or "is active for PID" in message:
        return SlotInUse(
            f"replication slot {slot} is in use by another consumer; stop it, or give this "
            f"pipeline its own source.options.slot_name {said}"
        )
    if "replication slot" in message and "does not exist" in message:
        return ReplicationError(
            f"replication slot {slot} does not exist (dropped outside pgflow?); changes since "
            f"the last run cannot be recovered from it; {RESNAPSHOT} {said}"
        )
    if "publication" in message and "does not exist" in message:
        return ReplicationError(
            f"publication {publication} of replication slot {slot} does not exist on the source "
            f"(dropped outside pgflow?); {RESNAPSHOT} {said}"
        )
    if "can no longer get changes from replication slot" in message or (
        "requested WAL segment" in message and "removed" in message
    ):
        return ReplicationError(
            f"replication slot {slot} was invalidated: the WAL it needed was removed, e.g. by "
            f"max_slot_wal_keep_size; {RESNAPSHOT} {said}"
        )
    if lost or (sqlstate is not None and sqlstate in TRANSIENT_SQLSTATES):
        return StreamLost(f"replication from slot {slot} was interrupted {said}")
    return ReplicationError(f"replication from slot {slot} failed {said}")


def sqlstate(result: pq.abc.PGresult) -> str | None:
    value = result.error_field(pq.DiagnosticField.SQLSTATE)
    return value.decode() if value else None


def error_message(result: pq.abc.PGresult) -> str:
    primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
    text = primary or result.error_message or b"no message"
    return text.decode(errors="replace").strip()


def error_text(err: BaseException) -> str:
    return str(err).strip() or type(err).__name__

"""Which database errors are transient: worth retrying after a pause, not fixing a spec.

A load is one transaction per sink (and one read snapshot per source), so a retry after any
of these starts over from the last committed state: nothing is lost or applied twice.
"""

from __future__ import annotations

import psycopg

# SQLSTATEs a retry can cure, by class:
TRANSIENT_SQLSTATES = {
    "08000": "connection_exception",
    "08001": "sqlclient_unable_to_establish_sqlconnection",
    "08003": "connection_does_not_exist",
    "08004": "sqlserver_rejected_establishment_of_sqlconnection",
    "08006": "connection_failure",
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "53300": "too_many_connections",
    "55006": "object_in_use (e.g. a replication slot held by another run)",
    "55P03": "lock_not_available (lock_timeout)",
    "57P01": "admin_shutdown (pg_terminate_backend, server stop)",
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now (server starting up or in recovery)",
}

# A connect failure carries no SQLSTATE; these messages mean the spec or secret is wrong.
_PERMANENT_CONNECT_FAILURES = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "invalid connection option",
    "invalid uri",
    "certificate",
)


def is_transient(exc: BaseException) -> bool:
    """True when `exc` (or an exception it was raised from) is worth a retry."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error) and _transient_psycopg_error(current):
            return True
        if getattr(current, "transient", False):
            return True
        current = _raised_from(current)
    return False


def _raised_from(exc: BaseException) -> BaseException | None:
    """The exception `exc` came from, as its traceback shows it: `raise ... from None` hides
    the one being handled (e.g. libpq's parse error behind "not a valid libpq URI"), which then
    must not make a permanent error look transient."""
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def _transient_psycopg_error(exc: psycopg.Error) -> bool:
    if exc.sqlstate is not None:
        return exc.sqlstate in TRANSIENT_SQLSTATES
    # No SQLSTATE: the client lost the server (connect refused, reset, closed mid-query).
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not (
        is_permanent_connect_failure(str(exc))
    )


def is_permanent_connect_failure(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _PERMANENT_CONNECT_FAILURES)

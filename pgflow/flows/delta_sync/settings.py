"""Settings of the Delta -> Postgres sync, read from the environment and checked, and its retries.

| variable | default | meaning |
|---|---|---|
| POSTGRES_CLIENT_BATCH_SIZE | 10000 | rows per sink transaction (COPY + upsert + position) |
| POSTGRES_MAX_RETRIES | 10 | retries of a transient Postgres error before giving up |
| POSTGRES_RETRY_DELAY | 1 | base delay, seconds, of the Postgres backoff |
| POSTGRES_CONNECTION_TIMEOUT | 10 | seconds a connection attempt may take (URI connections) |
| DELTA_CLIENT_BATCH_SIZE | 100000 | rows per batch read from a Delta data file |
| DELTA_CLIENT_WRITE_RETRIES | 5 | retries of a transient Delta read error (the dip name) |
| DELTA_CLIENT_WRITE_RETRY_DELAY | 10 | base delay, seconds, of the Delta read backoff |

Backoff is exponential with full jitter: before retry n (1-based) the sync sleeps a uniform
random time in [0, min(MAX_BACKOFF_SECONDS, delay * 2**(n-1))]. The retry count is of
consecutive failures: a batch committed in between starts the count again.

Transient: psycopg.OperationalError (connection lost or refused, server shutdown, a
serialization failure or deadlock, a lock or statement timeout) on the sink; OSError on a Delta
read except a missing file or a permission error, which no retry cures. Anything else raises
at once.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import psycopg

MAX_BACKOFF_SECONDS = 300.0


class SyncSettingsError(ValueError):
    """A sync setting has a bad value; the message names the variable and the value."""


@dataclass(frozen=True)
class _Spec:
    variable: str
    kind: type
    minimum: float


_SPECS = {
    "postgres_batch_size": _Spec("POSTGRES_CLIENT_BATCH_SIZE", int, 1),
    "postgres_max_retries": _Spec("POSTGRES_MAX_RETRIES", int, 0),
    "postgres_retry_delay": _Spec("POSTGRES_RETRY_DELAY", float, 0),
    "postgres_connect_timeout": _Spec("POSTGRES_CONNECTION_TIMEOUT", float, 0),
    "delta_batch_size": _Spec("DELTA_CLIENT_BATCH_SIZE", int, 1),
    "delta_max_retries": _Spec("DELTA_CLIENT_WRITE_RETRIES", int, 0),
    "delta_retry_delay": _Spec("DELTA_CLIENT_WRITE_RETRY_DELAY", float, 0),
}


@dataclass(frozen=True)
class SyncSettings:
    """The settings of one sync (the table in the module docstring); checked when made."""

    postgres_batch_size: int = 10_000
    postgres_max_retries: int = 10
    postgres_retry_delay: float = 1.0
    postgres_connect_timeout: float = 10.0
    delta_batch_size: int = 100_000
    delta_max_retries: int = 5
    delta_retry_delay: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            spec = _SPECS[f.name]
            _check(spec, getattr(self, f.name), repr(getattr(self, f.name)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SyncSettings:
        """Defaults overridden by the variables set (and not empty) in `environ`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # typed by each spec; __post_init__ checks them
        for name, spec in _SPECS.items():
            raw = environ.get(spec.variable, "").strip()
            if raw:
                values[name] = _parse(spec, raw)
        return cls(**values)


def _parse(spec: _Spec, raw: str) -> int | float:
    try:
        value: int | float = int(raw) if spec.kind is int else float(raw)
    except ValueError:
        raise SyncSettingsError(_message(spec, repr(raw))) from None
    _check(spec, value, repr(raw))
    return value


def _check(spec: _Spec, value: object, shown: str) -> None:
    number_types = (int,) if spec.kind is int else (int, float)
    ok = (
        isinstance(value, number_types)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= spec.minimum
    )
    if not ok:
        raise SyncSettingsError(_message(spec, shown))


def _message(spec: _Spec, shown: str) -> str:
    what = "a whole number" if spec.kind is int else "a number of seconds"
    return f"{spec.variable} must be {what} >= {spec.minimum:g}, got {shown}"


def backoff_seconds(
    attempt: int, base: float, rng: random.Random | None = None, cap: float = MAX_BACKOFF_SECONDS
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))] for attempt 1, 2, ..."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return (rng or random).uniform(0, ceiling)


def transient_postgres(error: BaseException) -> bool:
    return isinstance(error, psycopg.OperationalError)


def transient_delta(error: BaseException) -> bool:
    if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError):
        return False
    return isinstance(error, OSError)

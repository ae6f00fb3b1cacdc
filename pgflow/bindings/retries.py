"""Retries of pgflow assets: transient database errors are retried, everything else is not.

Dagster's RetryPolicy retries a failed step after `(2^n - 1) * delay` seconds, plus or minus
`delay` of jitter, before try n+1 (10 s: 0-20, 20-40, 60-80 s).
The IO managers decide what is transient (`pgflow.connections.errors.is_transient`: lost
connections, terminated backends, a server restarting, serialization failures, deadlocks,
lock timeouts, a slot briefly held by another run); every other error is raised as a
`dg.Failure(allow_retries=False)`, so a bad spec or bad data fails once, with its message.
"""

from __future__ import annotations

import os

import dagster as dg


def retry_policy(environ: dict[str, str] | None = None) -> dg.RetryPolicy:
    """From $PGFLOW_MAX_RETRIES (default 3) and $PGFLOW_RETRY_DELAY_SECONDS (default 10)."""
    environ = dict(os.environ) if environ is None else environ
    return dg.RetryPolicy(
        max_retries=_number(environ, "PGFLOW_MAX_RETRIES", 3),
        delay=_number(environ, "PGFLOW_RETRY_DELAY_SECONDS", 10),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def _number(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise ValueError(f"${name} must be a whole number of 0 or more, got {raw!r}")
    return int(raw)

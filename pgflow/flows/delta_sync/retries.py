"""The sync's retry loop: a step runs again after a transient error, after a backoff.

A transient sink error drops the connection, waits (exponential backoff, full jitter),
reconnects, re-takes the lock and continues from the stored position; a transient Delta read
error waits and re-reads from the stored position. Should the stored position have been
changed by another run meanwhile, the run stops with ConcurrentSync (apply.py). What is
transient, the limits and the delays: settings.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.settings import (
    SyncSettings,
    backoff_seconds,
    transient_delta,
    transient_postgres,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Attempt(NamedTuple):
    """A retry to come: the side's consecutive transient failures, this one included."""

    number: int
    limit: int
    delay: float  # the backoff's base delay


class Retrier:
    """Runs the steps of one sync, retrying transient errors; counts consecutive failures
    per side (a step that made progress calls `progressed` to start the counts again)."""

    def __init__(
        self,
        settings: SyncSettings,
        path: str,
        target: TableName,
        drop_connection: Callable[[], None],
    ):
        self.settings = settings
        self.path = path
        self.target = target
        self.drop_connection = drop_connection
        self.retries = 0
        self.postgres_failures = 0
        self.delta_failures = 0

    def run(self, step: Callable[[], T]) -> T:
        while True:
            try:
                return step()
            except Exception as error:
                attempt = self.count(error)
                if attempt is None or attempt.number > attempt.limit:
                    raise
                wait = backoff_seconds(attempt.number, attempt.delay)
                self.retries += 1
                log.warning(
                    "sync of %s into %s: %s (attempt %d of %d), retrying in %.1f s",
                    self.path,
                    self.target,
                    error,
                    attempt.number,
                    attempt.limit,
                    wait,
                )
                time.sleep(wait)

    def count(self, error: Exception) -> _Attempt | None:
        """Count a transient `error` against its side; None: not transient."""
        settings = self.settings
        if transient_postgres(error):
            self.postgres_failures += 1
            self.drop_connection()  # a broken connection is not reused; the lock went with it
            return _Attempt(
                self.postgres_failures, settings.postgres_max_retries, settings.postgres_retry_delay
            )
        if transient_delta(error):
            self.delta_failures += 1
            return _Attempt(
                self.delta_failures, settings.delta_max_retries, settings.delta_retry_delay
            )
        return None

    def progressed(self) -> None:
        self.postgres_failures = self.delta_failures = 0

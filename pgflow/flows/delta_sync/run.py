"""The Delta sync's entry point: `sync_delta` runs the steps (the package docstring) with
their retries, and drops a target it created should the run fail before its first batch."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.apply import stream
from pgflow.flows.delta_sync.context import Deletes, SyncRequest, SyncRun
from pgflow.flows.delta_sync.prepare import prepare
from pgflow.flows.delta_sync.result import SyncResult
from pgflow.flows.delta_sync.session import Connect
from pgflow.flows.delta_sync.settings import SyncSettings
from pgflow.flows.delta_sync.target import drop_failed_first_sync

log = logging.getLogger(__name__)


def sync_delta(
    connect: str | Connect,
    path: str,
    target: TableName,
    key: Sequence[str],
    *,
    pipeline: str,
    settings: SyncSettings | None = None,
    storage_options: dict[str, str] | None = None,
    deletes: Deletes = "none",
    full_pass: bool = False,
    fillfactor: int | None = None,
) -> SyncResult:
    """Sync the latest version of the Delta table at `path` into `target`, upserting on `key`.

    `connect` is a connection URI or a factory of new connections (called again to reconnect
    after a connection is lost; each connection is closed by the sync). `full_pass` reads
    every file of the version whatever is stored, even when the version is already synced
    (a repair: rows edited or deleted by hand in the target are rewritten). `fillfactor` is
    the spec's, set on the target; without it a target the sync creates gets
    ddl.UPSERT_FILLFACTOR (the sync upserts). Raises on a non-transient error or when retries
    run out; the stored position then lets the next run resume.
    """
    if deletes not in ("none", "cdf", "key_pass"):
        raise ValueError(f"deletes must be 'none', 'cdf' or 'key_pass', got {deletes!r}")
    if not key:
        raise ValueError("key: name the Delta column(s) that identify a row")
    settings = settings or SyncSettings.from_env()
    if isinstance(connect, str):
        connect = _uri_connect(connect, settings)
    request = SyncRequest(
        path, target, tuple(key), pipeline, settings, storage_options, deletes, fillfactor
    )
    run = SyncRun(request, connect)
    try:
        return _execute(run, full_pass)
    except BaseException:
        run.session.close()  # and its session lock: the drop takes it again
        if run.created:
            drop_failed_first_sync(connect, target)
        raise
    finally:
        run.session.close()


def _uri_connect(uri: str, settings: SyncSettings) -> Connect:
    timeout = max(1, round(settings.postgres_connect_timeout))
    return lambda: psycopg.connect(uri, autocommit=True, connect_timeout=timeout)


def _execute(run: SyncRun, full_pass: bool) -> SyncResult:
    path, target = run.request.path, run.request.target
    plan = run.retrier.run(lambda: prepare(run, full_pass))
    if isinstance(plan, SyncResult):
        log.info("sync of %s into %s: %s", path, target, plan.reason)
        return plan
    log.info("sync of %s version %d into %s: %s", path, plan.version, target, plan.reason)
    result = run.retrier.run(lambda: stream(run, plan))
    log.info(
        "sync of %s version %d into %s done in %.1f s: %d rows read, %d inserted, "
        "%d updated, %d unchanged, %d deleted, %d retries",
        path,
        result.version,
        target,
        result.seconds,
        result.rows_read,
        result.rows_inserted,
        result.rows_updated,
        result.rows_unchanged,
        result.rows_deleted,
        result.retries,
    )
    return result

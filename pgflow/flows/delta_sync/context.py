"""One run of the sync: what was asked, its connection and retries, and what it has learned
and done so far, kept across the retries of its steps."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.position import SyncState
from pgflow.flows.delta_sync.retries import Retrier
from pgflow.flows.delta_sync.session import Connect, Session
from pgflow.flows.delta_sync.settings import SyncSettings

Deletes = Literal["none", "cdf", "key_pass"]


@dataclass(frozen=True)
class SyncRequest:
    path: str  # the Delta table's
    target: TableName
    key: tuple[str, ...]
    pipeline: str
    settings: SyncSettings
    storage_options: dict[str, str] | None
    deletes: Deletes
    fillfactor: int | None  # the spec's; None: ddl.UPSERT_FILLFACTOR for a target created


@dataclass
class Counts:
    """Rows the run read and wrote, summed over the retries of its steps."""

    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


class SyncRun:
    """A run in progress. Its session (the sink connection) and retrier are its own; the
    rest is set by the steps (prepare.py, apply.py) and read by the result (result.py)."""

    def __init__(self, request: SyncRequest, connect: Connect):
        self.request = request
        self.session = Session(connect, request.target)
        self.retrier = Retrier(request.settings, request.path, request.target, self.session.close)
        self.run_id = uuid.uuid4().hex  # marks the positions this run stores
        self.started = time.monotonic()
        self.counts = Counts()
        self.initial: SyncState | None = None  # the stored state the plan was made from
        self.created = False  # stays True should a retry find the target this run created
        self.position_reset: str | None = None  # why the stored position was discarded
        self.columns_added: tuple[str, ...] = ()
        self.estimated_rows: int | None = None  # the target's, before the run wrote
        self.deletes_applied: str = request.deletes  # with its fallback, when it fell back
        self.insert_only = False  # the target was empty: plain INSERTs until a key conflicts
        self.verify = False  # a full pass: compare with hashes recomputed from the target

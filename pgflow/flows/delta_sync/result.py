"""What a sync reports: the plan it followed, the rows and files it read and wrote, its
retries and statements, the position it stored."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.context import SyncRun
from pgflow.flows.delta_sync.plan import Plan, PlanMode
from pgflow.flows.delta_sync.position import SyncState
from pgflow.sources import delta
from pgflow.sources.base import Position


@dataclass(frozen=True)
class SyncResult:
    target: TableName
    table_uri: str
    version: int  # the Delta version synced (or found already synced)
    skipped: bool
    plan: PlanMode
    reason: str  # why skipped, or why the pass reads what it reads
    base_version: int | None  # new_files passes: the version whose files were skipped
    files_total: int  # data files in the version
    files_planned: int  # files the pass reads
    files_synced: int  # files this run applied (fully, or the rest of a resumed file)
    resumed_from_file: int | None  # resume: index (in the pass) of the first file read
    resumed_from_row: int | None
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_deleted: int
    deletes: str  # how deletes were applied ("none", "key_pass", "cdf", or the fallback)
    created_target: bool
    columns_added: tuple[str, ...]
    retries: int
    seconds: float
    statements: list[str] = field(default_factory=list)
    position: Position | None = None
    position_reset: str | None = None  # why the stored position was discarded (position_owner)

    @property
    def rows_written(self) -> int:
        return self.rows_inserted + self.rows_updated + self.rows_deleted


def skipped_result(
    run: SyncRun, snapshot: delta.DeltaSnapshot, stored: Position | None
) -> SyncResult:
    """Nothing to do: the version is already synced."""
    reason = f"Delta version {snapshot.version} is already synced"
    return _result(run, snapshot, None, reason, files_synced=0, position=stored)


def finished_result(run: SyncRun, plan: Plan, done: SyncState) -> SyncResult:
    """The pass is done; `done` is the finished position it stored."""
    files_synced = len(plan.files) - plan.start_file
    position = done.position(plan.snapshot.table_uri)
    return _result(run, plan.snapshot, plan, plan.reason, files_synced, position)


def _result(
    run: SyncRun,
    snapshot: delta.DeltaSnapshot,
    plan: Plan | None,
    reason: str,
    files_synced: int,
    position: Position | None,
) -> SyncResult:
    counts = run.counts
    resumed = plan if plan is not None and plan.mode == "resume" else None
    return SyncResult(
        target=run.request.target,
        table_uri=snapshot.table_uri,
        version=snapshot.version,
        skipped=plan is None,
        plan=plan.mode if plan else "skip",
        reason=reason,
        base_version=plan.base if plan else None,
        files_total=len(snapshot.files),
        files_planned=len(plan.files) if plan else 0,
        files_synced=files_synced,
        resumed_from_file=resumed.start_file if resumed else None,
        resumed_from_row=resumed.start_row if resumed else None,
        rows_read=counts.rows_read,
        rows_inserted=counts.inserted,
        rows_updated=counts.updated,
        rows_unchanged=counts.rows_read - counts.inserted - counts.updated,
        rows_deleted=counts.deleted,
        deletes=run.deletes_applied if plan else "none",
        created_target=run.created,
        columns_added=run.columns_added,
        retries=run.retrier.retries,
        seconds=time.monotonic() - run.started,
        statements=list(run.session.statements),
        position=position,
        position_reset=run.position_reset,
    )

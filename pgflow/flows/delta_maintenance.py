"""Delta table maintenance: compaction, vacuum, a checkpoint and expired-log cleanup.

maintain() runs, in this order:
1. optimize.compact: small files rewritten into files of about `target_file_size`, in ONE
   commit that changes no row (delta-rs rewrites files, it never filters or rewrites values);
2. vacuum (full: also files no commit references, e.g. a failed load's leftovers) of files
   removed longer ago than `vacuum_retention`, with Delta's own retention check unless the
   spec allows shorter;
3. a checkpoint of the current version, then cleanup of log files older than the table's
   own `delta.logRetentionDuration` (30 days by default), never younger ones.

Positions survive: a pipeline's run counter and CDC's LSN are app transactions, which the
Delta snapshot (and every checkpoint) keeps whatever commits follow; the commit holding a
load's position is found by searching history (sinks/delta/state.py), and compaction adds
one commit after it, vacuum two. Only log cleanup can remove that commit, and only past
the table's log retention, as without maintenance.

A writer committing while compaction runs: delta-rs refuses the later commit when both
touched the same files. Compaction then retries once on the new version; if it is refused
again, MaintenanceConflict says so and nothing of this maintenance was committed.

Every N commits (`optimize_every`): maintenance_due() counts the commits since the last
OPTIMIZE in the history. When compaction has nothing to rewrite it commits an empty append
tagged `pgflow.maintenance`, so the count restarts there all the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from arro3.core import RecordBatchReader
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from pgflow.config.model import DeltaMaintenance
from pgflow.sinks.delta.table import data_files, open_table

MAINTENANCE_KEY = "pgflow.maintenance"
OPTIMIZE = "OPTIMIZE"
# Commits maintenance itself makes: they neither count as nor restart the every-N count.
_VACUUM_OPERATIONS = ("VACUUM START", "VACUUM END")


class MaintenanceConflict(RuntimeError):
    """Another writer committed to the table while compaction ran, twice in a row."""


class RetentionRefused(ValueError):
    """The spec's vacuum_retention is below the table's own retention check."""


@dataclass(frozen=True)
class MaintenanceResult:
    path: str
    files_before: int  # the table's data files
    files_after: int
    bytes_before: int
    bytes_after: int
    version_before: int
    version_after: int
    files_compacted: int  # data files compaction replaced
    files_written: int  # the files it wrote in their place
    files_vacuumed: int  # files vacuum deleted (delta-rs' count)
    checkpoint: bool  # a checkpoint of version_after was written
    retried: bool  # compaction was refused once by a concurrent commit and run again
    seconds: float


def maintain(
    path: str, storage_options: dict[str, str] | None, settings: DeltaMaintenance
) -> MaintenanceResult:
    """Compact, vacuum and checkpoint the Delta table at `path` (see the module docstring)."""
    started = time.monotonic()
    table = _open(path, storage_options)
    version_before, files_before = table.version(), data_files(table)
    hours = int(settings.vacuum_retention.total_seconds() // 3600)
    _check_retention(table, hours, settings)  # before anything is committed
    metrics, retried = _compact_once_or_twice(path, storage_options, settings)
    table = _open(path, storage_options)
    if not metrics.get("numFilesAdded") and settings.optimize_every > 0:
        _mark(table)  # nothing to rewrite: still restart the every-N count here
    vacuumed = table.vacuum(
        retention_hours=hours,
        dry_run=False,
        enforce_retention_duration=not settings.allow_short_retention,
        full=True,
    )
    if settings.checkpoint:
        table.create_checkpoint()
        table.cleanup_metadata()  # only logs past delta.logRetentionDuration
    files_after = data_files(table)
    return MaintenanceResult(
        path=path,
        files_before=len(files_before),
        files_after=len(files_after),
        bytes_before=sum(files_before.values()),
        bytes_after=sum(files_after.values()),
        version_before=version_before,
        version_after=table.version(),
        files_compacted=int(metrics.get("numFilesRemoved", 0)),
        files_written=int(metrics.get("numFilesAdded", 0)),
        files_vacuumed=len(vacuumed),
        checkpoint=settings.checkpoint,
        retried=retried,
        seconds=time.monotonic() - started,
    )


def _check_retention(table: DeltaTable, hours: int, settings: DeltaMaintenance) -> None:
    """delta-rs' own retention check, as a dry run: cheap (no listing), commits nothing."""
    try:
        table.vacuum(
            retention_hours=hours,
            dry_run=True,
            enforce_retention_duration=not settings.allow_short_retention,
        )
    except DeltaError as error:
        if "retention" not in str(error).lower():
            raise
        raise RetentionRefused(
            f"maintenance of the Delta table at {table.table_uri} was not run: vacuum_retention "
            f"({hours}h) is below the table's own retention check (delta-rs: {error}). Set "
            "sink.options.maintenance.vacuum_retention to at least the table's "
            "delta.deletedFileRetentionDuration, or allow_short_retention: true if nothing "
            "reads older versions"
        ) from error


def _open(path: str, storage_options: dict[str, str] | None) -> DeltaTable:
    """The table, with the options that keep its commits safe and clear storage errors."""
    table = open_table(path, storage_options)
    if table is None:
        raise ValueError(f"there is no Delta table at {path} to maintain (never loaded?)")
    return table


def _compact_once_or_twice(
    path: str, storage_options: dict[str, str] | None, settings: DeltaMaintenance
) -> tuple[dict[str, Any], bool]:
    """Compaction's metrics, and whether a concurrent commit made it run a second time."""
    table = _open(path, storage_options)
    try:
        return compact(table, settings), False
    except CommitFailedError:
        pass  # the table moved under us: plan again from its new version
    table = _open(path, storage_options)
    try:
        return compact(table, settings), True
    except CommitFailedError as error:
        raise MaintenanceConflict(
            f"maintenance of the Delta table at {path} was not applied: other writers "
            f"committed to it while it was compacted, twice (delta-rs: {error}). Nothing of "
            "this maintenance was committed and no row changed; it will be retried at its "
            "next run"
        ) from error


def compact(table: DeltaTable, settings: DeltaMaintenance) -> dict[str, Any]:
    """One OPTIMIZE commit (none when there is nothing to rewrite); delta-rs' metrics."""
    return table.optimize.compact(
        target_size=settings.target_file_size,
        commit_properties=CommitProperties(custom_metadata={MAINTENANCE_KEY: "optimize"}),
    )


def _mark(table: DeltaTable) -> None:
    """An empty commit tagged as maintenance: where the every-N count restarts."""
    empty = RecordBatchReader.from_batches(table.schema().to_arrow(), [])
    properties = CommitProperties(custom_metadata={MAINTENANCE_KEY: "nothing to compact"})
    write_deltalake(table, empty, mode="append", commit_properties=properties)
    table.update_incremental()


def maintenance_due(table: DeltaTable, settings: DeltaMaintenance) -> bool:
    """Whether `optimize_every` commits have been made since the last compaction."""
    every = settings.optimize_every
    return every > 0 and commits_since_maintenance(table, every) >= every


def commits_since_maintenance(table: DeltaTable, enough: int) -> int:
    """Data commits since the last OPTIMIZE (or maintenance mark); counting stops at `enough`."""
    limit: int | None = 2 * enough + 8  # vacuum's two commits per maintenance do not count
    while True:
        commits = table.history(limit)
        count = 0
        for commit in commits:
            if commit.get("operation") == OPTIMIZE or commit.get(MAINTENANCE_KEY):
                return count
            if commit.get("operation") not in _VACUUM_OPERATIONS:
                count += 1
                if count >= enough:
                    return count
        if limit is None or len(commits) < limit:
            return count
        limit = None

"""What a pass reads: every file of the version, only its new files, or the rest of an
interrupted pass (the package docstring says when each)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pgflow.flows.delta_sync.position import SyncState
from pgflow.flows.delta_sync.settings import transient_delta
from pgflow.flows.delta_sync.target import SOURCE_REPLACED
from pgflow.sources import delta

PlanMode = Literal["skip", "full", "new_files", "resume"]
Files = tuple[delta.DeltaFile, ...]


@dataclass(frozen=True)
class Plan:
    """A pass: which files of the version it reads, in order, from which file and row."""

    mode: PlanMode
    reason: str
    snapshot: delta.DeltaSnapshot  # the version the pass syncs
    base: int | None  # new_files and their resumes: the version whose files are skipped
    files: Files
    start_file: int
    start_row: int
    synced: int | None  # the last version whose sync finished

    @property
    def version(self) -> int:
        return self.snapshot.version


@dataclass(frozen=True)
class PlanInputs:
    """What the plan is chosen from, besides the stored state."""

    path: str  # the Delta table's, as the run was given it
    snapshot: delta.DeltaSnapshot
    storage_options: Mapping[str, str] | None
    full_pass: bool  # asked for, or forced by columns added
    columns_added: bool
    existed: bool  # the target was there before this run
    source_replaced: bool  # the stored position was of another Delta table at the path


def choose_plan(inputs: PlanInputs, stored: SyncState | None) -> Plan:
    """The pass, from what is stored for the target (None: nothing usable) and `inputs`;
    its reason says why it reads what it reads."""
    snapshot = inputs.snapshot
    if stored is None and inputs.source_replaced:
        return _every_file(snapshot, stored, f"{SOURCE_REPLACED}: every file")
    if stored is None:
        reason = "first sync of this Delta table into the target: every file"
        return _every_file(snapshot, stored, reason)
    if not inputs.existed:
        return _every_file(snapshot, stored, "the target did not exist: every file")
    if inputs.full_pass:
        reason = "columns were added" if inputs.columns_added else "a full pass was asked for"
        return _every_file(snapshot, stored, f"{reason}: every file")
    if not stored.finished:
        return _after_interruption(inputs, stored)
    version = snapshot.version
    if stored.version > version:
        reason = (
            f"the synced version {stored.version} is newer than the table's {version} "
            f"(table re-created?): every file"
        )
        return _every_file(snapshot, stored, reason)
    files = files_since(inputs, stored.version)
    if files is None:
        reason = f"version {stored.version}'s file list is gone from the log: every file"
        return _every_file(snapshot, stored, reason)
    reason = f"{len(files)} of {len(snapshot.files)} files are new since version {stored.version}"
    return Plan("new_files", reason, snapshot, stored.version, files, 0, 0, stored.synced)


def _every_file(snapshot: delta.DeltaSnapshot, stored: SyncState | None, reason: str) -> Plan:
    synced = stored.synced if stored else None
    return Plan("full", reason, snapshot, None, snapshot.files, 0, 0, synced)


def _after_interruption(inputs: PlanInputs, stored: SyncState) -> Plan:
    """The rest of an interrupted pass of this version, else every file."""
    snapshot, version = inputs.snapshot, inputs.snapshot.version
    if stored.version != version:
        reason = (
            f"the interrupted sync was of version {stored.version}; version {version} "
            f"starts over: every file"
        )
        return _every_file(snapshot, stored, reason)
    files = files_since(inputs, stored.base)
    if files is None or len(files) != stored.planned:
        reason = f"the interrupted sync of version {version} cannot be resumed: every file"
        return _every_file(snapshot, stored, reason)
    where = f"file {stored.next_file + 1} of {stored.planned}, row {stored.next_row}"
    return Plan(
        "resume",
        f"resuming the interrupted sync of version {version} at {where}",
        inputs.snapshot,
        stored.base,
        files,
        stored.next_file,
        stored.next_row,
        stored.synced,
    )


def files_since(inputs: PlanInputs, base: int | None) -> Files | None:
    """The files of the version that version `base` lacked (all for None); None when
    `base`'s file list cannot be read any more."""
    snapshot = inputs.snapshot
    if base is None:
        return snapshot.files
    try:
        old = delta.file_paths(inputs.path, base, inputs.storage_options)
    except Exception as error:
        if transient_delta(error):
            raise
        return None
    return tuple(f for f in snapshot.files if f.path not in old)

"""A CDC group: the tables that share one replication slot and one publication, and the
state one run keeps for each of them.

A pipeline with a slot of its own is a group of one. Each member keeps its own target, its own
position (the end LSN of the last transaction applied to it, stored in its sink transaction)
and its own error: a member that fails stops, the others go on, and the slot never moves past
the lowest position of the group's members.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pgflow.config.model import TableName
from pgflow.flows.cdc.model import (
    DEFAULT_BATCH_CHANGES,
    AnyCdcTarget,
    CdcResult,
    ConnectSink,
    position_source,
)
from pgflow.sources.catalog import TableInfo


@dataclass(frozen=True)
class GroupSettings:
    """What belongs to the slot, shared by every member."""

    name: str  # the owner written on the publication: the group's (or lone pipeline's) name
    slot: str
    publication: str
    batch_changes: int = DEFAULT_BATCH_CHANGES
    max_changes: int | None = None  # per run
    auto_cleanup: bool = False
    # Earlier owners that count as this group's (a lone pipeline's name from before groups).
    former_owners: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupMember:
    """One table of the group and where it goes."""

    pipeline: str
    table: TableName  # the source table
    target: AnyCdcTarget
    # Opens this member's sink connections (the resource's way); for a Delta target, source
    # connections (DeltaCdcTarget says why).
    connect_sink: ConnectSink
    sink_id: str  # members with the same sink_id share the run's sink connections
    snapshot: str = "initial"  # initial | never: how a new member starts
    reset: bool = False  # re-snapshot this member
    include_columns: tuple[str, ...] | None = None  # the publication's column list


@dataclass
class MemberRun:
    """One member during a run: its catalog, position, result and error."""

    member: GroupMember
    slot: str
    selected: bool  # materialized by this run (else only its position holds the slot back)
    info: TableInfo | None = None
    position: int | None = None  # applied through this LSN (None: nothing applied yet)
    result: CdcResult = field(default_factory=lambda: CdcResult(position_before=None))
    error: BaseException | None = None
    snapshot_reason: str | None = None
    backfilling: bool = False  # loading in a thread: holds the slot, not in the stream yet

    @property
    def identity(self) -> str:
        return position_source(self.member.table, self.slot)

    @property
    def pipeline(self) -> str:
        return self.member.pipeline

    @property
    def streaming(self) -> bool:
        """Takes changes in this run: selected, set up and not failed."""
        return (
            self.selected
            and self.error is None
            and self.position is not None
            and not self.backfilling
        )


class Failures:
    """Members that failed, shared by the staging (main) and applying threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def fail(self, member: MemberRun, error: BaseException) -> None:
        with self._lock:
            if member.error is None:
                member.error = error

    def failed(self, member: MemberRun) -> bool:
        with self._lock:
            return member.error is not None


def low_position(members: list[MemberRun]) -> int | None:
    """Where the slot may be confirmed: the lowest position of the members it holds changes
    for (those with a position that is still intact; a failed member keeps its position)."""
    held = [m.position for m in members if m.position is not None]
    return min(held) if held else None

"""The one seam between a group run and a member's target kind: a Postgres table
(postgres_member.py) or a Delta table (delta_member.py).

The group run, its stream and its applier do the same things for every member (read its
stored position, prepare the target, stage batches, apply them, store a reached position,
start it from a snapshot); how each is done depends on where the member writes, and is chosen
here, from the target's type, in one place.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol

from pgflow.flows.cdc.delta_stage import DeltaStaged
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun
from pgflow.flows.cdc.model import BatchResult, CdcTarget
from pgflow.flows.cdc.sink_connections import BatchConnections
from pgflow.flows.cdc.stage import StagedBatch
from pgflow.sources.base import Position
from pgflow.sources.changes import ChangeEvent, RelationSeen

Staged = StagedBatch | DeltaStaged


@dataclass(frozen=True)
class StoredPosition:
    position: Position | None  # the member's position as its target stores it
    reset: str | None = None  # why a stored position does not count (then: a snapshot)


class MemberStager(Protocol):
    """Stages one member's part of one batch, one event at a time."""

    def take(self, event: ChangeEvent) -> None: ...

    def finish(self) -> Staged: ...

    def abort(self) -> None: ...


class MemberSink(Protocol):
    def hold(self, run: GroupRun, member: MemberRun, stack: ExitStack) -> None:
        """Hold the target for the whole run (`stack` releases it)."""

    def read_position(self, run: GroupRun, member: MemberRun) -> StoredPosition: ...

    def prepare(self, run: GroupRun, member: MemberRun) -> None:
        """Create or reconcile the target before a round streams into it."""

    def drop_leftovers(self, run: GroupRun, member: MemberRun) -> None:
        """What a killed run left behind for this target."""

    def stager(
        self,
        run: GroupRun,
        member: MemberRun,
        relation: RelationSeen | None,
        connections: BatchConnections,
    ) -> MemberStager: ...

    def apply(self, run: GroupRun, member: MemberRun, staged: Staged) -> BatchResult:
        """The staged batch and its end LSN, in one transaction (one commit) of the target."""

    def discard(self, run: GroupRun, member: MemberRun, staged: Staged) -> None:
        """Drop a staged batch no apply consumed (best effort)."""

    def store_reached(self, run: GroupRun, member: MemberRun, lsn: int) -> bool:
        """Store `lsn` as the member's position (it has seen everything before it); False
        when the target keeps its position for now (too little moved)."""

    def start(
        self, run: GroupRun, member: MemberRun, start_lsn: int, snapshot: str, *, joining: bool
    ) -> None:
        """Load the member as of `snapshot` with `start_lsn` as its position (or only store
        that start, snapshot: never). `joining`: in live_add's thread, beside the run."""

    def lend(self, run: GroupRun, member: MemberRun, stack: ExitStack) -> None:
        """Let a joining member's load (another connection) take the target over."""

    def position_after(
        self, run: GroupRun, member: MemberRun
    ) -> tuple[Position | None, int | None]:
        """The position the target holds now, and its Delta version (None for Postgres)."""

    def describe(self, member: MemberRun) -> str:
        """The target, as messages name it."""


def member_sink(member: MemberRun) -> MemberSink:
    """The implementation for the member's target kind."""
    # Imported here: they import this module, and the Delta side loads deltalake and polars,
    # which a run into Postgres does without (their memory).
    if isinstance(member.member.target, CdcTarget):
        from pgflow.flows.cdc.postgres_member import POSTGRES

        return POSTGRES
    from pgflow.flows.cdc.delta_member import DELTA

    return DELTA

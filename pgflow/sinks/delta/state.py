"""Pipeline positions stored in the Delta table itself, in the commit that wrote the rows.

Every load commits exactly once, and that commit carries, next to its add/remove actions:

- an application transaction `txn {appId: "pgflow:<pipeline>", version: <run>}`: the run
  counter of the pipeline, kept in the table's snapshot (and checkpoints) by the Delta
  protocol, readable with `DeltaTable.transaction_version`;
- commit metadata (`commitInfo`): `pgflow.pipeline`, `pgflow.run` (the same counter),
  `pgflow.position` (JSON of the Position read up to, or null for full reads) and, for keyed
  column-cursor loads, `pgflow.cursor_boundary` (cursor_boundary.py).

Data, run and position are one atomic commit: a crash before it leaves all three old, a
crash after it leaves all three new, so a retry continues from exactly what was applied.
Reading: the run counter from the snapshot, then the newest commit tagged with that run.
Two loads of one pipeline racing each other both write `txn` for the same appId; delta-rs
then refuses the second commit (a concurrent transaction), so the older snapshot can never
be applied over the newer one.

If the commit holding the position was removed from the log (log retention,
`delta.logRetentionDuration`, 30 days by default) while the run counter survives in a
checkpoint, the position is reported as lost and the next read is full.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from deltalake import CommitProperties, DeltaTable, Transaction

from pgflow.sinks.delta.cursor_boundary import (
    BOUNDARY_KEY,
    boundary_from_commit,
    boundary_json,
)
from pgflow.sources.base import Position
from pgflow.sources.column_cursor import CursorBoundary

APP_ID_PREFIX = "pgflow:"
PIPELINE_KEY = "pgflow.pipeline"
RUN_KEY = "pgflow.run"
POSITION_KEY = "pgflow.position"
# The tagged commit is normally the newest; look further back only when it is not.
HISTORY_STEPS = (10, 1000, None)


@dataclass(frozen=True)
class DeltaState:
    """What a pipeline has committed to a Delta table so far."""

    run: int  # the pipeline's last committed run (0: never loaded)
    version: int | None  # the table version of that commit, when found
    position: Position | None  # the position it stored (None: full read or none stored)
    lost: bool = False  # the run is known but its commit is no longer in the log
    boundary: CursorBoundary | None = None  # the rows at the position's mark it read


def app_id(pipeline: str) -> str:
    return f"{APP_ID_PREFIX}{pipeline}"


def read_state(table: DeltaTable | None, pipeline: str) -> DeltaState:
    if table is None:
        return DeltaState(run=0, version=None, position=None)
    run = table.transaction_version(app_id(pipeline)) or 0
    if run == 0:
        return DeltaState(run=0, version=None, position=None)
    for limit in HISTORY_STEPS:
        commits = table.history(limit)
        for commit in commits:
            if commit.get(PIPELINE_KEY) == pipeline and commit.get(RUN_KEY) == run:
                position = position_from_json(commit)
                boundary = boundary_from_commit(commit)
                return DeltaState(run, commit.get("version"), position, boundary=boundary)
        if limit is None or len(commits) < limit:
            break
    return DeltaState(run=run, version=None, position=None, lost=True)


def stored_position(
    path: str, pipeline: str, storage_options: dict[str, str] | None = None
) -> Position | None:
    """The position `pipeline` last committed to the table at `path` (None: none)."""
    if not DeltaTable.is_deltatable(path, storage_options):
        return None
    return read_state(DeltaTable(path, storage_options=storage_options), pipeline).position


def commit_properties(
    pipeline: str,
    run: int,
    position: Position | None,
    extra: Sequence[Transaction] = (),
    boundary: CursorBoundary | None = None,
) -> CommitProperties:
    """The commit's metadata and the pipeline's run; `extra`: further app transactions the
    same commit stores (a CDC snapshot's start position); `boundary`: the rows at the new
    position's mark the read took."""
    metadata: dict[str, Any] = {
        PIPELINE_KEY: pipeline,
        RUN_KEY: run,
        POSITION_KEY: None if position is None else json.dumps(asdict(position)),
    }
    if boundary is not None:
        metadata[BOUNDARY_KEY] = boundary_json(boundary)
    return CommitProperties(
        custom_metadata=metadata,
        app_transactions=[Transaction(app_id(pipeline), run), *extra],
    )


def position_from_json(commit: dict[str, Any]) -> Position | None:
    text = commit.get(POSITION_KEY)
    if not text:
        return None
    return Position(**json.loads(text))

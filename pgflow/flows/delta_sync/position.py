"""The position the sync stores for its target: how far the sync of which Delta version got.

Stored in `_pgflow.pipeline_state` (sinks/postgres/state.py) as JSON, in the transaction of
the rows it covers. Light on purpose: the sensors read it without loading deltalake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from pgflow.sources.base import Position

POSITION_KIND: Final = "delta"
POSITION_TYPE: Final = "delta_sync_v1"


@dataclass(frozen=True)
class SyncState:
    """The position stored for a target: how far the sync of which Delta version got."""

    version: int  # the Delta version this pass syncs (or synced)
    finished: bool
    synced: int | None  # the last version whose sync finished (the target holds all of it)
    base: int | None  # the pass reads the files `base` lacked; None: every file
    planned: int  # files in the pass
    next_file: int  # index in the pass's file list of the first file not fully applied
    next_row: int  # rows of that file already applied
    run: str = ""  # the run that wrote it: a retry tells its own progress from another run's
    table_id: str = ""  # the Delta table's id ("": stored by a pgflow that did not record it)

    def position(self, source: str) -> Position:
        value = {
            "run": self.run,
            "table_id": self.table_id,
            "version": self.version,
            "finished": self.finished,
            "synced": self.synced,
            "base": self.base,
            "planned": self.planned,
            "next_file": self.next_file,
            "next_row": self.next_row,
        }
        return Position(POSITION_KIND, source, json.dumps(value, sort_keys=True), POSITION_TYPE)

    @classmethod
    def from_position(cls, position: Position | None, source: str) -> SyncState | None:
        """The stored state, or None when nothing (or something else) is stored."""
        if position is None or position.kind != POSITION_KIND:
            return None
        if position.source != source or position.value_type != POSITION_TYPE:
            return None
        try:
            value = json.loads(position.value)
            return cls(
                version=int(value["version"]),
                finished=bool(value["finished"]),
                synced=None if value["synced"] is None else int(value["synced"]),
                base=None if value["base"] is None else int(value["base"]),
                planned=int(value["planned"]),
                next_file=int(value["next_file"]),
                next_row=int(value["next_row"]),
                run=str(value.get("run", "")),
                table_id=str(value.get("table_id", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None

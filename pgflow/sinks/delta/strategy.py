"""What the Delta load must know about a sink strategy.

A strategy writes the read into the existing table in exactly one commit (context.py says what
it may touch); the load creates the table on the first load and rebuilds it on a reset itself.
Each strategy is a small class in its own module, registered by its `key` (the spec's mode:
one Delta strategy per mode) in strategies.py: adding one is its module and one line there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta.context import DeltaContext, DeltaWrite
from pgflow.sources.arrow import ArrowRead


class DeltaStrategy(ABC):
    key: ClassVar[str]  # StrategySpec.mode
    # Replaces the whole table, schema included: the read's types win over the table's, and a
    # column the source lost is no error.
    overwrites_table: ClassVar[bool] = False
    # Changes rows of an existing table and adds none (update, delete): never creates the
    # table, a reset re-reads the source and applies it (never rebuilds), and the read may
    # carry fewer columns than the table.
    changes_rows_only: ClassVar[bool] = False
    # The duplicate policy runs on the read before apply (delete: a key read twice is harmless).
    settles_duplicates: ClassVar[bool] = True

    def prepare_read(self, read: ArrowRead, spec: StrategySpec) -> None:
        """Narrow the read before its columns' forms are planned (delete: the key only)."""
        return None  # most strategies write every column read

    @abstractmethod
    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        """Write `ctx.read` into `ctx.table` in one commit carrying `ctx.commit`."""

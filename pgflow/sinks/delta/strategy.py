"""What the Delta load must know about a sink strategy.

A strategy writes the read into the existing table in exactly one commit (context.py says what
it may touch); the load creates the table on the first load and rebuilds it on a reset itself.
Each strategy is a small class in its own module, registered by its `key` (the spec's mode:
one Delta strategy per mode) in strategies.py: adding one is its module and one line there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite


class DeltaStrategy(ABC):
    key: ClassVar[str]  # StrategySpec.mode
    # Replaces the whole table, schema included: the read's types win over the table's, and a
    # column the source lost is no error.
    overwrites_table: ClassVar[bool] = False

    @abstractmethod
    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        """Write `ctx.read` into `ctx.table` in one commit carrying `ctx.commit`."""

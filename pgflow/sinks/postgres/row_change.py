"""What a write did to the target's row count, for the ledger in `_pgflow.pipeline_state`.

The ledger (`target_rows`) lets a run report the target's rows without a `count(*)` of the
whole table: each load stores it in its own transaction, next to the rows. A write that
emptied or created the target and filled it knows the new count exactly (`total`); one that
changed rows in place knows how many it added and removed (`delta`), which is added to the
stored count; one that cannot tell stores NULL (unknown), and so the next run counts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowChange:
    total: int | None = None  # the target holds exactly this many rows now
    delta: int | None = 0  # else: rows added minus rows removed (None: unknown)

    @staticmethod
    def exact(rows: int) -> RowChange:
        return RowChange(total=rows)

    @staticmethod
    def added(rows: int) -> RowChange:
        return RowChange(delta=rows)

    @property
    def known(self) -> bool:
        return self.total is not None or self.delta is not None

    def then(self, later: RowChange) -> RowChange:
        """This change followed by `later` (the steps of one transaction, in order)."""
        if later.total is not None or later.delta is None:
            return later
        if self.total is not None:
            return RowChange(total=self.total + later.delta)
        return RowChange(delta=None if self.delta is None else self.delta + later.delta)


UNKNOWN = RowChange(delta=None)
NO_CHANGE = RowChange()

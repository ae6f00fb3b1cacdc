"""Incremental reads by transaction ID (xmin): rows written since the stored checkpoint.

Any table works, with no cursor column, but xmin sees no deletes and every read scans the
whole table (xmin has no index). The raw `xmin` is 32 bits and wraps around, so the naive
`xmin::text::bigint >= checkpoint` silently returns nothing once the counter wraps. pgflow
extends each row's xmin to 64 bits against the snapshot's epoch-aware xmax: exact for any
transaction less than 2^31 transactions older than the snapshot, which is every transaction
that can still be unfrozen. A checkpoint that old forces a full resync.

The checkpoint stored after a read is the snapshot's xmin: every transaction below it had
finished when the snapshot was taken, so anything the read could not see is at or above it.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sources.base import Position, ReadPlan, full_read_reason
from pgflow.sources.postgres import PostgresTableSource

XID_SPACE = 2**32
# A transaction this far behind the snapshot may share its 32-bit xmin with a newer one.
MAX_CHECKPOINT_AGE = 2**31
CHECKPOINT_TYPE = "xid8"


class XminSource(PostgresTableSource):
    def __init__(
        self,
        conn: psycopg.Connection,
        table: TableName,
        include_columns: Sequence[str] | None = None,
    ):
        super().__init__(conn, table, include_columns=include_columns)
        self._plan: ReadPlan | None = None
        self._snapshot_xmin = 0
        self._snapshot_xmax = 0

    @property
    def cursor_column(self) -> None:
        return None

    @property
    def identity(self) -> str:
        return f"xmin:{self._table}"

    def open(self) -> None:
        super().open()
        # The snapshot is the transaction's (REPEATABLE READ), taken by the catalog read.
        row = self._conn.execute(
            "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint"
            " FROM pg_current_snapshot() s"
        ).fetchone()
        assert row is not None
        self._snapshot_xmin, self._snapshot_xmax = row

    def plan(self, stored: Position | None, reset: bool) -> ReadPlan:
        reason = full_read_reason(stored, reset, self.identity, CHECKPOINT_TYPE)
        if reason is None:
            assert stored is not None
            reason = self._checkpoint_too_old(int(stored.value))
        if reason is not None:
            self._plan = ReadPlan(full=True, reason=reason)
        else:
            assert stored is not None
            self._plan = ReadPlan(
                full=False, reason="incremental", since=stored, lower_bound=stored.value
            )
        return self._plan

    def row_filter(self) -> sql.Composable | None:
        if self._plan is None:
            raise RuntimeError("plan() must run before the source is read")
        if self._plan.full:
            return None
        assert self._plan.lower_bound is not None
        xmax = sql.Literal(self._snapshot_xmax)
        # xmax - ((xmax - xmin) mod 2^32): the 64-bit ID of xmin, counting back from xmax.
        extended = sql.SQL(
            "{xmax} - (({xmax} - xmin::text::bigint) % {space} + {space}) % {space}"
        ).format(xmax=xmax, space=sql.Literal(XID_SPACE))
        return sql.SQL("{} >= {}").format(extended, sql.Literal(int(self._plan.lower_bound)))

    def position_after(self, staged_max: str | None) -> Position:
        return Position("xmin", self.identity, str(self._snapshot_xmin), CHECKPOINT_TYPE)

    def _checkpoint_too_old(self, checkpoint: int) -> str | None:
        age = self._snapshot_xmax - checkpoint
        if age < 0:
            return (
                f"the stored checkpoint {checkpoint} is ahead of the source's next transaction "
                f"ID {self._snapshot_xmax} (a restored or different server?): full resync"
            )
        if age >= MAX_CHECKPOINT_AGE:
            return (
                f"the stored checkpoint {checkpoint} is {age:,} transactions old (2^31 or more); "
                "older transaction IDs may have wrapped around: full resync"
            )
        return None

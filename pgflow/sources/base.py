"""The contract between sources and sinks: a table shape plus a COPY byte stream.

A load opens its source only once it holds the target's lock, so two runs of one target read
in the order they write: a run can never apply an older snapshot over a newer one.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from psycopg.abc import Buffer

from pgflow.sources.catalog import TableInfo

CopyFormat = Literal["binary", "text"]
PositionKind = Literal["column", "xmin", "cdc", "delta"]


class TableSource(Protocol):
    """One consistent read of a table, streamed as Postgres COPY data."""

    def open(self) -> None:
        """Take the read snapshot and the table's shape; `info` is valid afterwards."""
        ...

    @property
    def info(self) -> TableInfo: ...

    def copy_out(self, columns: Sequence[str], fmt: CopyFormat) -> Generator[Buffer, None, None]:
        """COPY data for `columns` in `fmt`, in chunks; never the whole table at once."""
        ...

    def close(self) -> None:
        """End the read: the source keeps no snapshot open while the sink applies."""
        ...

    def window_bounds(self) -> tuple[object, object] | None:
        """The [lower, upper) slice of a time-partitioned read, typed; None reads all rows."""
        ...


@dataclass(frozen=True)
class Position:
    """How far a pipeline has read its source, stored with the data it covers.

    `source` names what the position is about (table, strategy, column); a stored position
    for anything else is ignored and the next read is full.
    """

    kind: PositionKind
    source: str
    value: str  # the value's text form: a cursor value, an epoch-extended transaction ID
    value_type: str  # its SQL type, e.g. 'timestamp with time zone', 'xid8'


@dataclass(frozen=True)
class ReadPlan:
    """What a run reads: everything (`full`, and why) or what changed after `since`."""

    full: bool
    reason: str
    since: Position | None = None  # the stored position the read starts from
    lower_bound: str | None = None  # the effective bound, after lookback ('' when full)


def full_read_reason(
    stored: Position | None, reset: bool, identity: str, value_type: str
) -> str | None:
    """Why this run must read everything, or None when `stored` can be continued from."""
    if reset:
        return "reset requested"
    if stored is None:
        return "first run: no stored position"
    if stored.source != identity or stored.value_type != value_type:
        return (
            f"the stored position is for {stored.source} ({stored.value_type}), "
            f"this pipeline reads {identity} ({value_type})"
        )
    return None


class SourceConfigError(ValueError):
    """The spec asks for something this source table cannot do; names the spec field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class IncrementalSource(TableSource, Protocol):
    """A source that reads only what changed since a stored position.

    The load calls `plan` with the position it stored in the sink (under the target's lock),
    streams `copy_out`, then stores `position_after(...)` in the same transaction as the rows.
    """

    @property
    def cursor_column(self) -> str | None:
        """The column whose largest staged value becomes the next position, if any."""
        ...

    def plan(self, stored: Position | None, reset: bool) -> ReadPlan:
        """Fix what `copy_out` reads; raises SourceConfigError before anything is read."""
        ...

    def position_after(self, staged_max: str | None) -> Position:
        """The position once this read is applied; `staged_max` is max(cursor_column) staged."""
        ...


def as_incremental(source: TableSource) -> IncrementalSource | None:
    """`source` as an IncrementalSource, or None for a full read.

    Checked on the class: an instance check would read `info` before the source is open.
    """
    if callable(getattr(type(source), "plan", None)):
        return cast(IncrementalSource, source)
    return None

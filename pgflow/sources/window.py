"""A time window of a source read: the rows of one Dagster time partition (or a range).

Dagster hands a partition's window as time zone-aware datetimes in the partition's time
zone. Each bound is passed to SQL in the partition column's own type, so the comparison
means what the user expects:
- date: the window must start and end at midnight (daily or monthly partitions do);
- timestamp (without time zone): the wall-clock time in the partition's time zone;
- timestamptz: the instant itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from pgflow.sources.base import SourceConfigError
from pgflow.sources.catalog import TableInfo

FIELD = "sink.strategy.partition_column"
_TIMESTAMP = "timestamp without time zone"
_TIMESTAMPTZ = "timestamp with time zone"


@dataclass(frozen=True)
class TimeWindow:
    """Rows with start <= column < end."""

    column: str
    start: datetime
    end: datetime

    def bounds(self, info: TableInfo) -> tuple[date | datetime, date | datetime]:
        """The bounds typed for the column in `info`; SourceConfigError if it cannot be."""
        column = info.column(self.column)
        if column is None:
            raise SourceConfigError(
                FIELD,
                f"'{self.column}' is not a column of {info.table}; name the date or timestamp "
                "column that decides each row's partition",
            )
        kind = column.base_type_sql
        if kind == "date":
            return _midnight(self.start, self.column), _midnight(self.end, self.column)
        if kind == _TIMESTAMP:
            return self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)
        if kind == _TIMESTAMPTZ:
            return self.start, self.end
        raise SourceConfigError(
            FIELD,
            f"'{self.column}' is {column.type_sql}; time partitions need a date, timestamp or "
            "timestamptz column",
        )


def _midnight(moment: datetime, column: str) -> date:
    if moment.time() != time(0):
        raise SourceConfigError(
            FIELD,
            f"'{column}' is a date, but the partition window bound {moment.isoformat()} is not "
            "at midnight; use daily or monthly partitions",
        )
    return moment.date()

"""The COPY of the source into the table a Postgres load fills, and `on_bad_rows: reject`.

A rejecting load first runs exactly as a `fail` load (typed or binary COPY, FREEZE, the
strategy's apply), under a savepoint: clean data costs that savepoint and nothing else. Only
when that attempt fails on a row (`rejects.is_row_error`: a value the COPY refuses, or a
CHECK or NOT NULL of the target that staging lacks, in the apply) is it rolled back to the
savepoint and run again, finding the bad rows (`rejects.fill`: text COPY, cast, bisection).

The second run reads the source again, and must see the same rows: it reads them in the same
snapshot. A rejecting load keeps its source open (its REPEATABLE READ transaction) until the
write is done, not only until its COPY is, and runs each COPY out of the source under a
savepoint of the source's connection: a COPY the sink's failure cancelled mid-stream aborts
only that savepoint, never the snapshot. A column cursor or xmin read re-runs the same bounded
query (its plan is fixed). Everything else, the position and the ledger included, is written
once, after the write, in the load's one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import TypeVar

import psycopg

from pgflow.config.model import TableName
from pgflow.sinks.postgres import rejects, staging
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.strategy import Fill
from pgflow.sources.base import CopyFormat, TableSource
from pgflow.sources.postgres import PostgresTableSource

T = TypeVar("T")


class SourceFill:
    """The COPYs of one load's source, and the passes of a rejecting load."""

    def __init__(
        self,
        log: SqlLog,
        source: TableSource,
        target: TableName,
        bad_rows: rejects.Rejects,
        progress: staging.ProgressCallback | None,
    ) -> None:
        self.log, self.source, self.target = log, source, target
        self.rejects, self.progress = bad_rows, progress
        self.copies = bad_rows.copies  # the load's: each COPY of the source is appended
        # A source read in a snapshot of its own can be read again (the fallback); any other
        # goes straight to the rejecting pass.
        self.rereadable = isinstance(source, PostgresTableSource)
        self.finding = bad_rows.enabled and not self.rereadable  # the rejecting pass runs

    def write(self, attempt: Callable[[], T]) -> T:
        """Run `attempt` (prepare the target and write it): once; for a rejecting load under
        a savepoint first, then, after a row error, again finding the bad rows."""
        if not self.rejects.enabled or self.finding:
            return attempt()
        try:
            with self.log.conn.transaction():  # a savepoint: a failed attempt leaves nothing
                written = attempt()
        except psycopg.Error as error:
            if not rejects.is_row_error(error):
                raise
            self.copies.clear()
            self.finding = True
            written = attempt()
        self.source.close()  # the load's fate is known: the snapshot is no longer needed
        return written

    def into(self, fmt: CopyFormat) -> Fill:
        """The COPY of the source into a table, for the strategy (or the load) to call once."""

        def fill(table: TableName) -> int:
            if self.finding:  # rows the target refuses go to its rejected table
                return rejects.fill(self.log, self.source, self.target, table, self.rejects)
            return self._copy(table, fmt)

        return fill

    def _copy(self, table: TableName, fmt: CopyFormat) -> int:
        columns = self.source.info.column_names
        # Every table filled here is new or truncated in this (sub)transaction: FREEZE is allowed.
        freeze = staging.can_freeze(self.log, table)
        # closing(): on failure the source's COPY must end now, not when the traceback dies.
        with self._source_savepoint(), closing(self.source.copy_out(columns, fmt)) as chunks:
            copied = staging.copy_into(self.log, table, columns, chunks, fmt, self.progress, freeze)
        self.copies.append(copied)
        if not self.rejects.enabled:
            self.source.close()  # the source is read; what follows touches only the sink
        return copied.rows

    @contextmanager
    def _source_savepoint(self) -> Iterator[None]:
        """A rejecting load's COPY out of the source, under a savepoint of its connection."""
        if not self.rejects.enabled or not isinstance(self.source, PostgresTableSource):
            yield
            return
        with self.source.connection.transaction():
            yield

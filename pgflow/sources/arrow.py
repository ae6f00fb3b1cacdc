"""A Postgres read as Arrow: CSV COPY streamed in bounded batches, parsed by polars.

The read runs `COPY (SELECT <one expression per column>) TO STDOUT (FORMAT CSV)` in the
source's snapshot (the same SELECT, row filter and hooks as its COPY reads) and cuts the
stream into batches at record boundaries (csv_records.py): at most `batch_rows` rows and
about `batch_bytes` bytes each, whichever comes first. polars parses each batch with an
explicit schema (no inference) and a few column expressions finish the types CSV cannot
carry (the type table: arrow_columns.py). With `prefetch` a thread reads and parses the next
batch(es) while the consumer works on the current one. Only those few batches are ever held:
memory is bounded by the batch size (2 MiB of CSV by default, so the row limit binds only for
rows under ~20 bytes), not by the table. pyarrow is not needed: batches leave as polars
DataFrames or arro3 record batches (Arrow C data interface).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence

import polars as pl
import psycopg
from arro3.core import RecordBatch, RecordBatchReader, Table
from psycopg import sql

from pgflow.sources.arrow_columns import (
    UNCONSTRAINED_CAST,
    ArrowColumn,
    arrow_columns,
    arrow_schema,
    polars_schema,
)
from pgflow.sources.arrow_errors import (
    ArrowReadError,
    check_lists_and_dates,
    first_line,
    no_form_message,
)
from pgflow.sources.csv_records import csv_batches
from pgflow.sources.postgres import PostgresTableSource, copy_to_stdout
from pgflow.sources.prefetched import Prefetched

DEFAULT_BATCH_ROWS = 100_000
DEFAULT_BATCH_BYTES = 2 * 1024 * 1024
# Batches read and parsed ahead of the consumer, in a thread: Postgres, the parser and the
# consumer (delta-rs encoding Parquet) then work at the same time. 0 reads in the caller.
DEFAULT_PREFETCH = 1


class ArrowRead:
    """One streamed read of `source` (open, and planned if incremental) as Arrow batches.

    Iterate `frames()` (polars DataFrames) or `record_batches()`, or hand `reader()` to an
    Arrow consumer; the read can be consumed once. `rows` and `bytes` count what was read so
    far. `select` replaces the default query (the source's SELECT of `expressions`), e.g. to
    deduplicate; it must produce the same columns in the same order.
    """

    def __init__(
        self,
        source: PostgresTableSource,
        columns: Sequence[str] | None = None,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        prefetch: int = DEFAULT_PREFETCH,
    ):
        if batch_rows < 1 or batch_bytes < 1:
            raise ValueError("batch_rows and batch_bytes must be positive")
        self.source = source
        self.columns = arrow_columns(source.info, columns)
        self.schema = polars_schema(self.columns)
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self.prefetch = prefetch
        self.rows = 0
        self.bytes = 0
        self.select: sql.Composable | None = None
        self._closers: list[Callable[[], None]] = []
        self._read_schema = pl.Schema({c.name: c.read_as for c in self.columns})

    def use_columns(self, columns: Sequence[ArrowColumn]) -> None:
        """Read the same columns another way (e.g. numerics at a scale chosen from the data)."""
        self.columns = list(columns)
        self.schema = polars_schema(self.columns)
        self._read_schema = pl.Schema({c.name: c.read_as for c in self.columns})

    @property
    def expressions(self) -> list[sql.Composable]:
        """The SELECT list: one expression per column, over the source's column expression."""
        return [c.expression(self.source.column_expression(c.name)) for c in self.columns]

    def query(self) -> sql.Composable:
        return (
            self.select if self.select is not None else self.source.select_query(self.expressions)
        )

    def frames(self) -> Iterator[pl.DataFrame]:
        """The read's batches; with `prefetch`, read and parsed ahead in a thread."""
        frames = self._frames()
        if self.prefetch <= 0:
            self._closers.append(frames.close)
            return frames
        ahead = Prefetched(frames, self.prefetch)
        self._closers.append(ahead.close)
        return iter(ahead)

    def close(self) -> None:
        """End the read now, wherever its consumer stopped: the COPY ends, no thread is left.

        Call it before the source's connection is used again (or closed): a consumer that
        failed mid-stream may never close the iterators it was given.
        """
        while self._closers:
            self._closers.pop()()

    def _frames(self) -> Generator[pl.DataFrame, None, None]:
        copy = copy_to_stdout(self.query(), "csv")
        chunks = self.source.copy_select(copy)
        try:
            for data in csv_batches(chunks, self.batch_rows, self.batch_bytes):
                self.bytes += len(data)
                frame = self._parse(data)
                self.rows += frame.height
                yield frame
        except psycopg.errors.NumericValueOutOfRange as error:
            # Raised by the read's own guarded cast of unconstrained numerics to Decimal(38,9).
            names = [c.name for c in self.columns if c.sql_template.endswith(UNCONSTRAINED_CAST)]
            raise ArrowReadError(
                no_form_message(
                    self.source.info,
                    names,
                    "Decimal(38,9) (29 or more integer digits, more than 9 after the point, "
                    "or +-Infinity)",
                    str(error).replace("\n", " "),
                )
            ) from error
        finally:
            chunks.close()  # on failure the COPY must end now, not when the traceback dies

    def record_batches(self) -> Iterator[RecordBatch]:
        for frame in self.frames():
            yield from Table.from_arrow(frame).to_batches()

    def reader(self) -> RecordBatchReader:
        """A lazy Arrow stream of the read (one batch pulled at a time)."""
        return RecordBatchReader.from_batches(arrow_schema(self.columns), self.record_batches())

    def _parse(self, data: bytes) -> pl.DataFrame:
        try:
            frame = pl.read_csv(
                data,
                has_header=False,
                schema=self._read_schema,
                infer_schema=False,
                quote_char='"',
            )
        except pl.exceptions.PolarsError as error:
            column = self._unparsable_column(data)
            if column is None:
                raise ArrowReadError(
                    f"reading {self.source.info.table}: a value has no Arrow form ({error}). "
                    "Numeric NaN/Infinity in numeric(p,s), infinite dates and timestamps, and "
                    "years from 262143 cannot be represented"
                ) from error
            raise ArrowReadError(
                no_form_message(
                    self.source.info, [column.name], str(column.dtype), first_line(error)
                )
            ) from error
        finishing = [(c, c.finish) for c in self.columns if c.finish is not None]
        if not finishing:
            return frame
        try:
            return frame.with_columns(finish(pl.col(c.name)) for c, finish in finishing)
        except pl.exceptions.PolarsError:
            for c, finish in finishing:  # name the column that failed
                try:
                    frame.select(finish(pl.col(c.name)))
                except pl.exceptions.PolarsError as error:
                    check_lists_and_dates(self.source.info, c.name, c.dtype, frame)
                    raise ArrowReadError(
                        no_form_message(self.source.info, [c.name], str(c.dtype), first_line(error))
                    ) from error
            raise

    def _unparsable_column(self, data: bytes) -> ArrowColumn | None:
        """The first column whose CSV fields polars cannot parse as its type (error path)."""
        for column in self.columns:
            if column.read_as == pl.String():
                continue
            schema = {c.name: pl.String() for c in self.columns} | {column.name: column.read_as}
            try:
                pl.read_csv(
                    data, has_header=False, schema=schema, infer_schema=False, quote_char='"'
                )
            except pl.exceptions.PolarsError:
                return column
        return None

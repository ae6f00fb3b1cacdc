"""A Postgres read as Arrow: CSV COPY streamed in bounded batches, parsed by polars.

The read runs `COPY (SELECT <one expression per column>) TO STDOUT (FORMAT CSV)` in the
source's snapshot (the same SELECT, row filter and hooks as its COPY reads) and cuts the
stream into batches at record boundaries: at most `batch_rows` rows and about `batch_bytes`
bytes each, whichever comes first. polars parses each batch with an explicit schema (no
inference) and a few column expressions finish the types CSV cannot carry. With `prefetch`
a thread reads and parses the next batch(es) while the consumer works on the current one.
Only those few batches are ever held: memory is bounded by the batch size (2 MiB of CSV by
default, so the row limit binds only for rows under ~20 bytes), not by the table. pyarrow is
not needed: batches leave as polars DataFrames or arro3 record batches (Arrow C data
interface).

Record boundaries: Postgres' CSV quotes any field holding a quote, a newline or a comma and
doubles the quotes inside, so a newline ends a record exactly when the number of quote
characters before it is even. A batch is cut at the last such newline; the rest starts the
next one.

Type mapping (domains are mapped as their base type; every column is nullable). Each Arrow
field also carries the column's Postgres type in its metadata (pg_types.py):

    Postgres                              Arrow (polars)
    smallint / integer / bigint / oid     Int16 / Int32 / Int64 / Int64
    real / double precision               Float32 / Float64 (NaN and +-Infinity kept)
    numeric(p, s), p <= 38                Decimal(p, s), exact
    numeric (no precision)                Decimal(38, 9) here, a value that needs more
                                          fails the read (never rounded); a Delta load
                                          re-plans it exactly (sinks/delta/numerics.py)
    numeric(p, s), p > 38 or s < 0        String, the value as Postgres prints it
    boolean                               Boolean
    date                                  Date, any year Postgres has (arrow_dates.py)
    timestamp with time zone              Datetime("us", "UTC"): UTC instants
    timestamp without time zone           Datetime("us"), naive (Delta: timestamp_ntz); the
                                          only naive type, for the only zone-less source type
    text, varchar, char(n), name, uuid    String (char(n) keeps its padding)
    json, jsonb                           String: the JSON text (jsonb as Postgres prints it)
    enums                                 String: the label
    bytea                                 Binary
    1-D, 1-based arrays                   List, typed per element (arrow_arrays.py); NULL
                                          elements kept
    interval, time, timetz, inet, ranges, String: the text Postgres prints under pgflow's
      money, xml, bit, composites, ...    portable settings (IntervalStyle postgres, ISO)

Values with no Arrow form fail the read naming the column (and the value where it can):
numeric NaN or Infinity in numeric(p,s), +-infinity dates and timestamps (and years from
262143), arrays of two or more dimensions or not starting at 1.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import polars as pl
import psycopg
from arro3.core import RecordBatch, RecordBatchReader, Schema, Table
from psycopg import sql

from pgflow.sources import arrow_arrays, arrow_dates
from pgflow.sources.arrow_errors import (
    ArrowReadError,
    check_lists_and_dates,
    first_line,
    no_form_message,
)
from pgflow.sources.arrow_types import (
    BOOL,
    BYTEA,
    DATE,
    FLOATS,
    INTEGERS,
    MAX_DECIMAL_PRECISION,
    NUMERIC,
    TIMESTAMP,
    TIMESTAMPTZ,
)
from pgflow.sources.catalog import Column, TableInfo
from pgflow.sources.pg_types import PG_TYPE_KEY, recorded_type
from pgflow.sources.postgres import PostgresTableSource, copy_to_stdout

DEFAULT_BATCH_ROWS = 100_000
DEFAULT_BATCH_BYTES = 2 * 1024 * 1024
# Batches read and parsed ahead of the consumer, in a thread: Postgres, the parser and the
# consumer (delta-rs encoding Parquet) then work at the same time. 0 reads in the caller.
DEFAULT_PREFETCH = 1
UNCONSTRAINED_NUMERIC = (38, 9)

_STRINGS = {
    25,
    1043,
    1042,
    19,
    18,
    2950,
    114,
    3802,
}  # text, varchar, char, name, "char", uuid, json
_UNCONSTRAINED_CAST = "::numeric({},{})".format(*UNCONSTRAINED_NUMERIC)
# The cast would round a value with more decimals silently: such a value becomes Infinity,
# which the cast refuses (NumericValueOutOfRange), so the read fails instead of rounding.
_UNCONSTRAINED_GUARD = (
    "(CASE WHEN round({0}, " + str(UNCONSTRAINED_NUMERIC[1]) + ") <> {0} THEN 'Infinity' "
    "ELSE {0} END)"
)
_NUMERIC_TYPMOD = re.compile(r"^numeric\((\d+),(-?\d+)\)$")

Finish = Callable[[pl.Expr], pl.Expr]


@dataclass(frozen=True)
class ArrowColumn:
    """How one source column is read: the SQL around it, the CSV type, the final type."""

    name: str
    dtype: pl.DataType  # the column's Arrow type
    read_as: pl.DataType  # what polars parses the CSV field as
    sql_template: str = "{}"  # wraps the column expression in the SELECT
    finish: Finish | None = None  # turns `read_as` into `dtype`
    pg_type: str = ""  # the Postgres type recorded with the Arrow field (pg_types.py)

    def expression(self, column: sql.Composable) -> sql.Composable:
        return sql.SQL(self.sql_template).format(column)


def arrow_column(column: Column) -> ArrowColumn:
    """The Arrow reading of `column` (see the module's type table)."""
    name, oid = column.name, column.base_type_oid
    if column.element_oid:
        return _array_column(column)
    if column.kind == "e" or oid in _STRINGS:
        return ArrowColumn(name, pl.String(), pl.String())
    if oid in INTEGERS:
        return ArrowColumn(name, INTEGERS[oid], INTEGERS[oid])
    if oid in FLOATS:
        return ArrowColumn(name, FLOATS[oid], FLOATS[oid])
    if oid == BOOL:
        return ArrowColumn(name, pl.Boolean(), pl.String(), finish=lambda e: e == "t")
    if oid == NUMERIC:
        return _numeric_column(column)
    if oid == DATE:
        days = arrow_dates.date_from_days
        return ArrowColumn(name, pl.Date(), pl.String(), arrow_dates.DATE_SQL, days)
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        zoned = oid == TIMESTAMPTZ  # timestamptz: UTC instants, whatever the session zone
        dtype = pl.Datetime("us", "UTC" if zoned else None)
        micros = arrow_dates.timestamp_from_micros(zoned)
        return ArrowColumn(name, dtype, pl.String(), arrow_dates.TIMESTAMP_SQL, micros)  # type: ignore[arg-type]
    if oid == BYTEA:
        # bytea_output hex: "\x0aff"
        return ArrowColumn(
            name, pl.Binary(), pl.String(), finish=lambda e: e.str.slice(2).str.decode("hex")
        )
    return ArrowColumn(name, pl.String(), pl.String())


def _numeric_column(column: Column) -> ArrowColumn:
    match = _NUMERIC_TYPMOD.match(column.base_type_sql)
    if match is None:
        precision, scale = UNCONSTRAINED_NUMERIC
        dtype = pl.Decimal(precision, scale)
        return ArrowColumn(column.name, dtype, dtype, _UNCONSTRAINED_GUARD + _UNCONSTRAINED_CAST)
    precision, scale = int(match[1]), int(match[2])
    if precision > MAX_DECIMAL_PRECISION or scale < 0 or scale > precision:
        return ArrowColumn(column.name, pl.String(), pl.String())
    return ArrowColumn(column.name, pl.Decimal(precision, scale), pl.Decimal(precision, scale))


def _array_column(column: Column) -> ArrowColumn:
    dtype, typed = arrow_arrays.array_list(column)
    finish = arrow_arrays.finish(dtype, typed)
    return ArrowColumn(column.name, dtype, pl.String(), arrow_arrays.SQL_TEMPLATE, finish)  # type: ignore[arg-type]


def arrow_columns(info: TableInfo, columns: Sequence[str] | None = None) -> list[ArrowColumn]:
    names = info.column_names if columns is None else columns
    found = []
    for name in names:
        column = info.column(name)
        if column is None:
            raise ArrowReadError(f"{info.table} has no column {name!r}")
        found.append(dataclasses.replace(arrow_column(column), pg_type=recorded_type(column)))
    return found


def polars_schema(columns: Sequence[ArrowColumn]) -> pl.Schema:
    return pl.Schema({c.name: c.dtype for c in columns})


def arrow_schema(columns: Sequence[ArrowColumn]) -> Schema:
    """The Arrow schema of the batches, as polars exports them (e.g. strings as Utf8View).

    Each field carries its column's Postgres type in its metadata (PG_TYPE_KEY).
    """
    schema = Table.from_arrow(pl.DataFrame(schema=polars_schema(columns))).schema
    types = {c.name: c.pg_type for c in columns if c.pg_type}
    return Schema(
        [f.with_metadata({PG_TYPE_KEY: types[f.name]}) if f.name in types else f for f in schema]
    )


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
            names = [c.name for c in self.columns if c.sql_template.endswith(_UNCONSTRAINED_CAST)]
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
        finishing = [c for c in self.columns if c.finish is not None]
        if not finishing:
            return frame
        try:
            return frame.with_columns(c.finish(pl.col(c.name)) for c in finishing)  # type: ignore[misc]
        except pl.exceptions.PolarsError:
            for c in finishing:  # name the column that failed
                try:
                    frame.select(c.finish(pl.col(c.name)))  # type: ignore[misc]
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


T = TypeVar("T")
_DONE = object()


class Prefetched(Generic[T]):
    """`items`, produced by a thread up to `depth` ahead; its errors are raised to the reader.

    The thread owns `items` (and whatever it reads from, e.g. a COPY on the source's
    connection) until `close()`: then it stops, closes `items` and is joined. Iterating to
    the end, or closing the iterator, closes it too.
    """

    def __init__(self, items: Generator[T, None, None], depth: int):
        self._items = items
        self._slots: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="pgflow-arrow-read", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        try:
            while (item := self._slots.get()) is not _DONE:
                if isinstance(item, _Failure):
                    raise item.error
                yield item  # type: ignore[misc]
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    break
        except BaseException as error:
            self._put(_Failure(error))
        finally:
            self._items.close()
            self._put(_DONE)


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def csv_batches(
    chunks: Iterable[bytes | memoryview], batch_rows: int, batch_bytes: int
) -> Iterator[bytes]:
    """Regroup CSV COPY chunks into runs of whole records: ~batch_rows rows, ~batch_bytes.

    Postgres sends each row of a COPY TO as one message, which psycopg yields as one chunk,
    so chunks count rows. Cuts are made at record boundaries found in the data, so they stay
    right whatever the chunks hold; a chunk of several rows only makes its batch longer.
    """
    pending = bytearray()  # appending copies the chunk: psycopg's buffer is freed at once
    count = 0
    limit = batch_bytes
    for chunk in chunks:
        pending += chunk
        count += 1
        if count < batch_rows and len(pending) < limit:
            continue
        cut = complete_records(pending)
        if cut == 0:  # one record larger than the limit: read on, without re-scanning often
            limit = len(pending) * 2
            continue
        with memoryview(pending) as view, view[:cut] as records:
            data = bytes(records)
        del pending[:cut]
        yield data
        count, limit = 0, batch_bytes
    if pending:
        if complete_records(pending) != len(pending):
            raise ArrowReadError("the CSV COPY stream ended inside a record")
        yield bytes(pending)


def complete_records(data: bytes | bytearray) -> int:
    """Length of the longest prefix of `data` that is whole CSV records (0 when none)."""
    end = len(data)
    odd = data.count(b'"') & 1  # quotes in data[:end] are odd: inside a quoted field
    while True:
        newline = data.rfind(b"\n", 0, end)
        if newline < 0:
            return 0
        odd ^= data.count(b'"', newline + 1, end) & 1  # now: quotes before the newline
        if not odd:
            return newline + 1
        end = newline

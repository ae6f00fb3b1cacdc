"""How each source column is read as Arrow: the SQL around it, the CSV type, the final type.

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
import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from arro3.core import Schema, Table
from psycopg import sql

from pgflow.sources import arrow_arrays, arrow_dates
from pgflow.sources.arrow_errors import ArrowReadError
from pgflow.sources.arrow_types import NUMBERS, TIMESTAMPS, Finish, exact_decimal
from pgflow.sources.catalog import Column, TableInfo
from pgflow.sources.pg_oids import BOOL, BYTEA, DATE, NUMERIC, TIMESTAMPTZ
from pgflow.sources.pg_types import PG_TYPE_KEY, recorded_type

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
UNCONSTRAINED_CAST = "::numeric({},{})".format(*UNCONSTRAINED_NUMERIC)
# The cast would round a value with more decimals silently: such a value becomes Infinity,
# which the cast refuses (NumericValueOutOfRange), so the read fails instead of rounding.
_UNCONSTRAINED_GUARD = (
    "(CASE WHEN round({0}, " + str(UNCONSTRAINED_NUMERIC[1]) + ") <> {0} THEN 'Infinity' "
    "ELSE {0} END)"
)
_NUMERIC_TYPMOD = re.compile(r"^numeric\((\d+),(-?\d+)\)$")


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
    if oid in NUMBERS:
        return ArrowColumn(name, NUMBERS[oid], NUMBERS[oid])
    if oid == BOOL:
        return ArrowColumn(name, pl.Boolean(), pl.String(), finish=lambda e: e == "t")
    if oid == NUMERIC:
        return _numeric_column(column)
    if oid == DATE:
        days = arrow_dates.date_from_days
        return ArrowColumn(name, pl.Date(), pl.String(), arrow_dates.DATE_SQL, days)
    if oid in TIMESTAMPS:
        zoned = oid == TIMESTAMPTZ  # timestamptz: UTC instants, whatever the session zone
        dtype = pl.Datetime("us", "UTC" if zoned else None)
        micros = arrow_dates.timestamp_from_micros(zoned)
        return ArrowColumn(name, dtype, pl.String(), arrow_dates.TIMESTAMP_SQL, micros)
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
        return ArrowColumn(column.name, dtype, dtype, _UNCONSTRAINED_GUARD + UNCONSTRAINED_CAST)
    decimal = exact_decimal(int(match[1]), int(match[2]))
    if decimal is None:
        return ArrowColumn(column.name, pl.String(), pl.String())
    return ArrowColumn(column.name, decimal, decimal)


def _array_column(column: Column) -> ArrowColumn:
    dtype, typed = arrow_arrays.array_list(column)
    finish = arrow_arrays.finish(dtype, typed)
    return ArrowColumn(column.name, dtype, pl.String(), arrow_arrays.SQL_TEMPLATE, finish)


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
    fields = (schema.field(i) for i in range(len(schema)))
    return Schema(
        [f.with_metadata({PG_TYPE_KEY: types[f.name]}) if f.name in types else f for f in fields]
    )

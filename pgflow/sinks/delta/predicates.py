"""Conditions handed to delta-rs: literals, validation, and what its errors mean.

delta-rs parses a predicate with DataFusion's SQL parser and silently ignores whatever
follows the first complete expression (`id > 1 garbage` overwrites `id > 1`), so a spec's
predicate is checked first for shape (balanced parentheses, no `;`: the Postgres sink's
scanner), then parenthesized, then planned against the table before any write.

An overwrite with a predicate makes delta-rs check every written row against it: a row the
predicate does not select fails the write ("N rows failed validation check") before the
commit, so nothing changes. RowsOutsidePredicate reports that.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import polars as pl
from deltalake import DeltaTable, QueryBuilder

from pgflow.sinks.delta.keys import quote

_OUTSIDE = re.compile(r"(\d+) rows failed validation check")


class RowsOutsidePredicate(ValueError):
    """Rows read fall outside what the load replaces; nothing was written."""


def rows_outside(error: BaseException) -> int | None:
    """How many written rows delta-rs found outside the overwrite predicate, if that failed."""
    match = _OUTSIDE.search(str(error))
    return int(match[1]) if match else None


def plan_error(table: DeltaTable, predicate: str) -> str | None:
    """Why DataFusion cannot plan `predicate` on `table` (None when it can); reads no rows."""
    query = f"SELECT * FROM target WHERE {predicate} LIMIT 0"
    try:
        QueryBuilder().register("target", table).execute(query).read_all()
    except Exception as error:
        return str(error).strip()
    return None


def literal(value: object, dtype: pl.DataType) -> str:
    """`value` as a DataFusion literal of `dtype` (ints, strings, dates, booleans)."""
    if value is None:
        return "NULL"
    if dtype.is_integer() and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if dtype == pl.Boolean and isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if dtype == pl.Date:
        day = _as_date(value)
        return f"CAST('{day.isoformat()}' AS DATE)"
    if dtype == pl.String and isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"{value!r} cannot be compared with a {dtype} column")


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise ValueError(f"{value.isoformat()} is not a whole day, the column is a date")
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError(f"{value!r} is not a date")


def column_in(column: str, values: list[object], dtype: pl.DataType) -> str:
    """`column` is one of `values` (NULL-safe: a None in `values` selects NULLs)."""
    parts = []
    present = [v for v in values if v is not None]
    if present:
        parts.append(f"{quote(column)} IN ({', '.join(literal(v, dtype) for v in present)})")
    if len(present) < len(values):
        parts.append(f"{quote(column)} IS NULL")
    return "(" + " OR ".join(parts) + ")"


def column_between(column: str, lower: object, upper: object, dtype: pl.DataType) -> str:
    """lower <= column < upper."""
    name = quote(column)
    return f"({name} >= {literal(lower, dtype)} AND {name} < {literal(upper, dtype)})"

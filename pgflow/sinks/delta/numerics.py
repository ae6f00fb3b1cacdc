"""Unconstrained numerics into Delta: an exact Decimal chosen from the data, or their text.

Postgres `numeric` without a precision holds any value (NaN and +-Infinity too); a Delta
decimal holds 38 digits at a fixed scale. Nothing is ever rounded:
- with `sink.options.numeric_as: string` such a column is written as its Postgres text;
- otherwise as Decimal(38, s). A new table (or one rewritten whole: full_refresh, reset)
  takes s from the rows read: their largest scale, and at least 9 while the integer digits
  leave room. Into an existing table the table's own type is kept.
One aggregate query in the read's snapshot (only for tables with such columns) checks every
value read fits; if one does not, the load fails before writing anything, naming the
column, a value and the option.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import polars as pl
from arro3.core import Table
from deltalake import DeltaTable
from psycopg import sql

from pgflow.config.model import NumericAs
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.arrow_columns import ArrowColumn
from pgflow.sources.arrow_errors import ArrowReadError
from pgflow.sources.arrow_types import MAX_DECIMAL_PRECISION
from pgflow.sources.catalog import Column
from pgflow.sources.postgres import PostgresTableSource

MIN_SCALE = 9  # the scale pgflow always used: kept when the data leaves room for it
_NOT_FINITE = "{0} IN ('NaN', 'Infinity', '-Infinity')"
_DIGITS = (
    "CASE WHEN abs({0}) < 1 OR " + _NOT_FINITE + " THEN 0 ELSE length(trunc(abs({0}))::text) END"
)


@dataclasses.dataclass(frozen=True)
class _Fit:
    scale: int  # the largest scale of a value read
    digits: int  # the most digits before the point
    not_finite: bool  # NaN or +-Infinity read


def is_unconstrained(column: Column | None) -> bool:
    return (
        column is not None
        and column.base_type_oid == 1700
        and not column.element_oid
        and column.base_type_sql == "numeric"
    )


def unconstrained(read: ArrowRead) -> list[str]:
    info = read.source.info
    return [c.name for c in read.columns if is_unconstrained(info.column(c.name))]


def fits_unconstrained(column: Column | None, have: pl.DataType) -> bool:
    """Whether `have` is a type a load gives an unconstrained numeric (Decimal(38, s), text)."""
    chosen = isinstance(have, pl.Decimal) and have.precision == MAX_DECIMAL_PRECISION
    return is_unconstrained(column) and (chosen or isinstance(have, pl.String))


def plan_numerics(
    read: ArrowRead, existing: Mapping[str, pl.DataType], numeric_as: NumericAs
) -> None:
    """Make `read` carry each unconstrained numeric exactly (see the module doc), or fail."""
    names = unconstrained(read)
    if not names:
        return
    source = read.source
    imposed = {n: _target(existing.get(n), numeric_as) for n in names}
    measured = [n for n in names if not isinstance(imposed[n], pl.String)]
    fits = _measure(source, measured) if measured else {}
    decided: dict[str, pl.DataType] = {}
    for name in names:
        dtype = imposed[name] or _chosen(fits[name])
        if isinstance(dtype, pl.Decimal):
            _check(source, name, dtype, fits[name], imposed[name] is not None)
        decided[name] = dtype
    read.use_columns([_column(c, decided.get(c.name)) for c in read.columns])


def _target(have: pl.DataType | None, numeric_as: NumericAs) -> pl.DataType | None:
    """The type an existing table or the option imposes; None: to be chosen from the data."""
    if isinstance(have, pl.Decimal) or have == pl.String:
        return have
    return pl.String() if numeric_as == "string" else None


def _chosen(fit: _Fit) -> pl.DataType:
    room = MAX_DECIMAL_PRECISION - fit.digits
    return pl.Decimal(MAX_DECIMAL_PRECISION, max(0, min(room, max(fit.scale, MIN_SCALE))))


def _column(column: ArrowColumn, dtype: pl.DataType | None) -> ArrowColumn:
    if dtype is None:
        return column
    if not isinstance(dtype, pl.Decimal):
        return dataclasses.replace(
            column, dtype=pl.String(), read_as=pl.String(), sql_template="{}"
        )
    cast = f"({{}})::numeric({dtype.precision},{dtype.scale})"
    return dataclasses.replace(column, dtype=dtype, read_as=dtype, sql_template=cast)


def _measure(source: PostgresTableSource, names: list[str]) -> dict[str, _Fit]:
    expressions: list[sql.Composable] = []
    for name in names:
        x = source.column_expression(name)
        expressions += [
            sql.SQL("coalesce(max(scale({0})), 0)").format(x),
            sql.SQL("coalesce(max(" + _DIGITS + "), 0)").format(x),
            sql.SQL("coalesce(bool_or(" + _NOT_FINITE + "), false)").format(x),
        ]
    row = source.fetch(source.select_query(expressions))[0]
    return {n: _Fit(*row[3 * i : 3 * i + 3]) for i, n in enumerate(names)}


def _check(
    source: PostgresTableSource, name: str, dtype: pl.Decimal, fit: _Fit, existing: bool
) -> None:
    precision, scale = dtype.precision or MAX_DECIMAL_PRECISION, dtype.scale
    if not fit.not_finite and fit.scale <= scale and fit.digits <= precision - scale:
        return
    sample = _sample(source, name, precision, scale)
    holder = (
        f"the Delta table's Decimal({precision},{scale}) column"
        if existing
        else f"no Delta decimal (at most {MAX_DECIMAL_PRECISION} digits)"
    )
    raise ArrowReadError(
        f"reading {source.info.table}: column {name} (numeric) holds {sample}, which {holder} "
        "can hold exactly; nothing was written. Set sink.options.numeric_as: string to carry "
        "unconstrained numerics as their exact text"
        + (", or run once with reset to choose the scale again" if existing else "")
        + ", or declare the column numeric(p,s) with p <= 38 in the source"
    )


def _sample(source: PostgresTableSource, name: str, precision: int, scale: int) -> str:
    query = sql.SQL(
        "SELECT v::text FROM ({}) AS r(v) WHERE " + _NOT_FINITE.replace("{0}", "v") + " OR "
        "scale(v) > {} OR " + _DIGITS.replace("{0}", "v") + " > {} LIMIT 1"
    ).format(
        source.select_query([source.column_expression(name)]),
        sql.Literal(scale),
        sql.Literal(precision - scale),
    )
    rows = source.fetch(query)
    return repr(rows[0][0]) if rows else "a value"


def kept_types(table: DeltaTable | None, *, rewrites: bool) -> dict[str, pl.DataType]:
    """The column types a load must keep: the table's, unless it rewrites the schema."""
    if table is None or rewrites:
        return {}
    return dict(pl.DataFrame(Table.from_batches([], schema=table.schema().to_arrow())).schema)

"""Built-in Postgres type OIDs (fixed in every database) and the Arrow types of the scalar
ones: shared by the column reading (arrow_columns.py) and the array element reading
(arrow_arrays.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import polars as pl

from pgflow.sources.pg_oids import TIMESTAMP, TIMESTAMPTZ

MAX_DECIMAL_PRECISION = 38
INTEGERS: dict[int, pl.DataType] = {
    21: pl.Int16(),
    23: pl.Int32(),
    20: pl.Int64(),
    26: pl.Int64(),
}  # smallint, integer, bigint, oid
FLOATS: dict[int, pl.DataType] = {700: pl.Float32(), 701: pl.Float64()}
# Numbers whose Postgres text polars parses as the type itself.
NUMBERS: dict[int, pl.DataType] = INTEGERS | FLOATS
TIMESTAMPS = (TIMESTAMP, TIMESTAMPTZ)

# Turns the type a value was parsed as into its Arrow type (a polars expression on it).
Finish: TypeAlias = Callable[[pl.Expr], pl.Expr]


def exact_decimal(precision: int, scale: int) -> pl.Decimal | None:
    """The Arrow decimal that holds every numeric(precision, scale) exactly, or None."""
    if precision > MAX_DECIMAL_PRECISION or scale < 0 or scale > precision:
        return None
    return pl.Decimal(precision, scale)

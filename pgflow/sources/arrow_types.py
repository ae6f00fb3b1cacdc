"""Built-in Postgres type OIDs (fixed in every database) and the Arrow types of the scalar
ones: shared by the column reading (arrow.py) and the array element reading (arrow_arrays.py)."""

from __future__ import annotations

import polars as pl

MAX_DECIMAL_PRECISION = 38
INTEGERS: dict[int, pl.DataType] = {
    21: pl.Int16(),
    23: pl.Int32(),
    20: pl.Int64(),
    26: pl.Int64(),
}  # smallint, integer, bigint, oid
FLOATS: dict[int, pl.DataType] = {700: pl.Float32(), 701: pl.Float64()}
BOOL, BYTEA, NUMERIC, DATE, TIMESTAMP, TIMESTAMPTZ = 16, 17, 1700, 1082, 1114, 1184

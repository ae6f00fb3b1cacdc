"""Delta (polars) column types as Postgres columns, and polars batches as COPY text.

A column pgflow wrote carries its Postgres type in the Delta field metadata
(`pgflow.pg_type`, pg_types.py): the target column gets exactly that type (numeric(12,2),
varchar(20), uuid, interval, inet, int4range, numeric(10,2)[] ...), when it reads as a
built-in type's spelling and is a list exactly when the type is an array. Otherwise (tables
written by others) the Arrow type maps to its closest Postgres type, stated once:

| Delta / polars | Postgres |
|---|---|
| byte, short / Int8, Int16 | smallint |
| integer / Int32 | integer |
| long / Int64 | bigint |
| float / Float32 | real |
| double / Float64 | double precision |
| decimal(p,s) / Decimal(p,s) | numeric(p,s) |
| boolean | boolean |
| string | text |
| binary | bytea |
| date | date |
| timestamp (UTC instants) / Datetime(tz) | timestamp with time zone |
| timestamp_ntz / Datetime() | timestamp without time zone |
| array of a type above / List | that type's array, e.g. text[]; NULL elements kept |
| struct, map, array of struct, map or array | jsonb |

JSON of nested values: struct fields by name, in schema order; maps as an array of
{"key", "value"} objects; decimals as strings (exact); binary as hex strings; timestamps as
ISO-8601 strings; NaN and infinities as null (JSON has no such numbers). Dates and timestamps
of any year are rendered as Postgres reads them (years before 1 as "... BC").

COPY text format: NULL is \\N and an empty string is empty, so the two never meet; backslash,
newline, carriage return and tab in values are escaped, so any string round-trips.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from polars.datatypes import DataTypeClass

from pgflow.config.model import TableName
from pgflow.sources.catalog import Column, TableInfo
from pgflow.sources.pg_types import is_built_in_shape

# A polars type as polars hands it out: an instance (a frame's schema) or a class (the
# element of `pl.List(pl.String)`).
DType = pl.DataType | DataTypeClass


class UnsupportedDeltaType(TypeError):
    """A Delta column type with no Postgres mapping; names the column."""


@dataclass(frozen=True)
class _PgType:
    sql: str  # format_type() spelling
    oid: int
    array_oid: int


_INT2 = _PgType("smallint", 21, 1005)
_SCALARS: dict[DataTypeClass, _PgType] = {
    pl.Int8: _INT2,
    pl.Int16: _INT2,
    pl.UInt8: _INT2,
    pl.Int32: _PgType("integer", 23, 1007),
    pl.UInt16: _PgType("integer", 23, 1007),
    pl.Int64: _PgType("bigint", 20, 1016),
    pl.UInt32: _PgType("bigint", 20, 1016),
    pl.Float32: _PgType("real", 700, 1021),
    pl.Float64: _PgType("double precision", 701, 1022),
    pl.Boolean: _PgType("boolean", 16, 1000),
    pl.String: _PgType("text", 25, 1009),
    pl.Binary: _PgType("bytea", 17, 1001),
    pl.Date: _PgType("date", 1082, 1182),
}
_NUMERIC = (1700, 1231)
_TIMESTAMPTZ = _PgType("timestamp with time zone", 1184, 1185)
_TIMESTAMP = _PgType("timestamp without time zone", 1114, 1115)
JSONB = _PgType("jsonb", 3802, 3807)
TEXT = _SCALARS[pl.String]


def _scalar(dtype: DType) -> _PgType | None:
    if isinstance(dtype, pl.Decimal):
        precision = dtype.precision if dtype.precision is not None else 38
        return _PgType(f"numeric({precision},{dtype.scale})", *_NUMERIC)
    if isinstance(dtype, pl.Datetime):
        return _TIMESTAMPTZ if dtype.time_zone else _TIMESTAMP
    return _SCALARS.get(dtype.base_type())


def _nested(dtype: DType) -> bool:
    return isinstance(dtype, pl.List | pl.Array | pl.Struct)


def postgres_type(name: str, dtype: pl.DataType) -> tuple[str, int, int, str]:
    """(type_sql, type_oid, element_oid, element_type_sql) for a column of `dtype`."""
    if isinstance(dtype, pl.List | pl.Array):
        inner = dtype.inner
        element = None if _nested(inner) else _scalar(inner)
        if element is not None:
            return f"{element.sql}[]", element.array_oid, element.oid, element.sql
        if _nested(inner) or isinstance(inner, pl.Null):
            return JSONB.sql, JSONB.oid, 0, ""
    elif isinstance(dtype, pl.Struct):
        return JSONB.sql, JSONB.oid, 0, ""
    else:
        scalar = _scalar(dtype)
        if scalar is not None:
            return scalar.sql, scalar.oid, 0, ""
    raise UnsupportedDeltaType(f"column {name}: Delta type {dtype} has no Postgres mapping")


def postgres_column(
    name: str, dtype: pl.DataType, not_null: bool, pg_type: str | None = None
) -> Column:
    """The target column: the Postgres type pgflow recorded for it, else the mapped one."""
    if pg_type is not None and recorded_type_fits(pg_type, dtype):
        return plain_column(name, pg_type, 0, not_null)  # oid 0: a built-in type's spelling
    type_sql, oid, element_oid, element_sql = postgres_type(name, dtype)
    return plain_column(name, type_sql, oid, not_null, element_oid, element_sql)


def recorded_type_fits(pg_type: str, dtype: pl.DataType) -> bool:
    """Whether a recorded type can be used: a built-in type's spelling, arrays for lists."""
    is_list = isinstance(dtype, pl.List | pl.Array) and not _nested(dtype.inner)
    return is_built_in_shape(pg_type) and pg_type.endswith("[]") == is_list


def plain_column(
    name: str,
    type_sql: str,
    oid: int,
    not_null: bool,
    element_oid: int = 0,
    element_sql: str = "",
) -> Column:
    return Column(
        name=name,
        type_sql=type_sql,
        type_oid=oid,
        kind="b",
        not_null=not_null,
        base_type_sql=type_sql,
        base_type_oid=oid,
        element_oid=element_oid,
        element_kind="b" if element_oid else "",
        element_type_sql=element_sql,
        enum_name=None,
    )


def table_info(
    table: TableName, columns: Sequence[Column], primary_key: tuple[str, ...]
) -> TableInfo:
    return TableInfo(
        table=table,
        columns=tuple(columns),
        primary_key=primary_key,
        estimated_rows=None,
        is_partitioned=False,
    )


# ---------------------------------------------------------------------------------------------
# COPY text rendering


_COPY_SPECIAL = ["\\", "\n", "\r", "\t"]
_COPY_ESCAPED = ["\\\\", "\\n", "\\r", "\\t"]
_ARRAY_SPECIAL = ["\\", '"']
_ARRAY_ESCAPED = ["\\\\", '\\"']


def copy_text(frame: pl.DataFrame) -> bytes:
    """`frame` as COPY text-format rows (tab-separated, \\N for NULL), in its column order."""
    rendered = frame.select(
        _render(pl.col(name), dtype).alias(name) for name, dtype in frame.schema.items()
    )
    buffer = io.BytesIO()
    rendered.write_csv(
        buffer,
        include_header=False,
        separator="\t",
        line_terminator="\n",
        quote_style="never",  # every string below is already escaped for COPY text
        null_value="\\N",
    )
    return buffer.getvalue()


def _copy_escape(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_many(_COPY_SPECIAL, _COPY_ESCAPED)


def _render(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_integer() or dtype == pl.Boolean:
        return expr  # write_csv: plain digits, true/false
    if dtype == pl.String:
        return _copy_escape(expr)
    if dtype == pl.Binary:
        return pl.concat_str(pl.lit("\\\\x"), expr.bin.encode("hex"))
    if isinstance(dtype, pl.List | pl.Array) and not _nested(dtype.inner):
        if isinstance(dtype.inner, pl.Null):
            return _copy_escape(_json_text(expr, dtype))
        return _copy_escape(_array_literal(expr, dtype))
    if _nested(dtype):
        return _copy_escape(_json_text(expr, dtype))
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return _dated(expr)
    return expr.cast(pl.String)  # floats, decimals: shortest exact


def _dated(expr: pl.Expr) -> pl.Expr:
    """ISO text Postgres reads for any year: "+10000-..." without "+", year 0 as "0001 BC"."""
    text = expr.cast(pl.String).str.strip_prefix("+")
    year = expr.dt.year()
    bc = pl.concat_str(
        (1 - year).cast(pl.String).str.zfill(4), text.str.replace(r"^-?\d+", ""), pl.lit(" BC")
    )
    return pl.when(year < 1).then(bc).otherwise(text)


def _array_literal(expr: pl.Expr, dtype: pl.List | pl.Array) -> pl.Expr:
    """A one-dimensional Postgres array literal, every element quoted, NULL elements bare."""
    if isinstance(dtype, pl.Array):
        expr = expr.cast(pl.List(dtype.inner))
    element = pl.element()
    if dtype.inner == pl.Binary:
        text = pl.concat_str(pl.lit("\\x"), element.bin.encode("hex"))
    else:
        text = element.cast(pl.String)
    quoted = pl.concat_str(
        pl.lit('"'), text.str.replace_many(_ARRAY_SPECIAL, _ARRAY_ESCAPED), pl.lit('"')
    )
    body = expr.list.eval(quoted.fill_null("NULL")).list.join(",")
    return pl.concat_str(pl.lit("{"), body, pl.lit("}"))


def _json_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    encoded = pl.struct(_jsonable(expr, dtype).alias("v")).struct.json_encode()
    value = encoded.str.strip_prefix('{"v":').str.strip_suffix("}")
    return pl.when(expr.is_null()).then(None).otherwise(value)


def _has_binary(dtype: DType) -> bool:
    if dtype == pl.Binary:
        return True
    if isinstance(dtype, pl.List | pl.Array):
        return _has_binary(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_has_binary(f.dtype) for f in dtype.fields)
    return False


def _jsonable(expr: pl.Expr, dtype: DType) -> pl.Expr:
    """`expr` with every binary value (at any depth) as a hex string: JSON has no bytes."""
    if not _has_binary(dtype):
        return expr
    if dtype == pl.Binary:
        return expr.bin.encode("hex")
    if isinstance(dtype, pl.Array):
        return _jsonable(expr.cast(pl.List(dtype.inner)), pl.List(dtype.inner))
    if isinstance(dtype, pl.List):
        return expr.list.eval(_jsonable(pl.element(), dtype.inner))
    assert isinstance(dtype, pl.Struct)
    rebuilt = pl.struct(
        [_jsonable(expr.struct.field(f.name), f.dtype).alias(f.name) for f in dtype.fields]
    )
    return pl.when(expr.is_null()).then(None).otherwise(rebuilt)

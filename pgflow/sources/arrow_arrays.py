"""Postgres arrays as Arrow lists: one-dimensional, 1-based arrays, every element type.

Each array travels as `array_to_json(array::text[])`: a JSON list of the elements' Postgres
text (NULL elements as null), which polars decodes and then types per element:

    element type                        Arrow list of
    smallint / integer / bigint / oid   Int16 / Int32 / Int64 / Int64
    real / double precision             Float32 / Float64 (NaN and +-Infinity kept)
    boolean                             Boolean
    numeric(p, s), p <= 38              Decimal(p, s), exact
    date                                Date
    timestamp / timestamptz             Datetime("us") / Datetime("us", "UTC")
    any other type (text, uuid, enum,   String: the element's Postgres text
      unconstrained numeric, interval,
      inet, jsonb, ...)

Postgres arrays can have any lower bound and several dimensions; a list has neither, and
array_to_json would silently drop the bound. Such an array is sent as `!` + its own text
instead of JSON, fails the decoding, and `bad_array` names it in the error.
"""

from __future__ import annotations

import re

import polars as pl

from pgflow.sources import arrow_types, pg_oids
from pgflow.sources.arrow_types import Finish, exact_decimal
from pgflow.sources.catalog import Column

_NAIVE = "%Y-%m-%d %H:%M:%S%.f"
_NUMERIC_TYPMOD = re.compile(r"^numeric\((\d+),(\d+)\)\[\]$")
# One dimension, lower bound 1 (an empty array has neither: array_ndims is NULL).
SQL_TEMPLATE = (
    "CASE WHEN array_ndims({0}) > 1 OR array_lower({0}, 1) <> 1 THEN '!' || ({0})::text"
    " ELSE array_to_json(({0})::text[])::text END"
)
BAD_ARRAY_MARK = "!"


def array_list(column: Column) -> tuple[pl.List, pl.Expr]:
    """The list type of an array column and the expression typing its elements' text."""
    oid = column.element_oid
    element: pl.DataType = pl.String()
    typed = pl.element()
    if column.element_kind == "e":
        pass
    elif oid in arrow_types.NUMBERS:
        element = arrow_types.NUMBERS[oid]
        typed = pl.element().cast(element, strict=True)
    elif oid == pg_oids.BOOL:
        element, typed = pl.Boolean(), pl.element() == "true"  # boolean::text
    elif oid == pg_oids.NUMERIC and (match := _NUMERIC_TYPMOD.match(column.base_type_sql)):
        if (decimal := exact_decimal(int(match[1]), int(match[2]))) is not None:
            element = decimal
            typed = pl.element().cast(element, strict=True)
    elif oid == pg_oids.DATE:
        element, typed = pl.Date(), pl.element().str.to_date("%Y-%m-%d", strict=True)
    elif oid in arrow_types.TIMESTAMPS:
        zoned = oid == pg_oids.TIMESTAMPTZ
        element = pl.Datetime("us", "UTC" if zoned else None)
        layout = _NAIVE + "%#z" if zoned else _NAIVE
        typed = pl.element().str.to_datetime(layout, time_unit="us", strict=True)
    return pl.List(element), typed


def finish(dtype: pl.List, typed: pl.Expr) -> Finish:
    def apply(raw: pl.Expr) -> pl.Expr:
        decoded = raw.str.json_decode(pl.List(pl.String()))
        return decoded if dtype.inner == pl.String else decoded.list.eval(typed)

    return apply


def bad_array(values: pl.Series) -> str | None:
    """Why the first array in `values` that a list cannot hold is refused, or None."""
    found = values.filter(values.str.starts_with(BAD_ARRAY_MARK)).head(1)
    if found.len() == 0:
        return None
    text = found[0][len(BAD_ARRAY_MARK) :]
    shown = text if len(text) <= 60 else text[:57] + "..."
    dimensions = (
        text.split("=")[0].count("[") if text.startswith("[") else len(text) - len(text.lstrip("{"))
    )
    why = "it has several dimensions" if dimensions > 1 else "its lower bound is not 1"
    return (
        f"holds the array {shown}, which a Delta list cannot hold faithfully ({why}); nothing "
        "was written. Store it one-dimensional and 1-based in the source, or read it as text "
        "through a view (e.g. the column cast ::text)"
    )

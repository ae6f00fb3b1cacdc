"""The messages of a read that cannot give a value an Arrow form: column, value, way out."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pgflow.sources import arrow_arrays, arrow_dates
from pgflow.sources.catalog import TableInfo


class ArrowReadError(ValueError):
    """A source value has no Arrow form, or the CSV stream could not be parsed."""


def check_lists_and_dates(
    info: TableInfo, name: str, dtype: pl.DataType, frame: pl.DataFrame
) -> None:
    """Raise a short message for a list or date value Arrow cannot hold; else return."""
    declared = info.column(name)
    shown = f" ({declared.type_sql})" if declared is not None else ""
    values = frame.get_column(name)
    if isinstance(dtype, pl.List) and (why := arrow_arrays.bad_array(values)) is not None:
        raise ArrowReadError(f"reading {info.table}: column {name}{shown} {why}")
    dated = dtype == pl.Date or isinstance(dtype, pl.Datetime)
    if dated and (value := arrow_dates.out_of_range(values)) is not None:
        raise ArrowReadError(
            f"reading {info.table}: column {name}{shown} holds {value!r}, which a Delta "
            f"{'date' if dtype == pl.Date else 'timestamp'} cannot hold; nothing was "
            "written. Store a finite value (or NULL) in the source, or read the column as "
            "text through a view (e.g. the column cast ::text)"
        )


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def no_form_message(info: TableInfo, names: Sequence[str], dtype: str, detail: str) -> str:
    """What failed (table, column, type, the value's problem) and the way out."""
    described = ", ".join(
        f"{name} ({column.type_sql})" if (column := info.column(name)) else name for name in names
    )
    plural = "s" if len(names) > 1 else ""
    return (
        f"reading {info.table}: column{plural} {described} holds a value with no Delta/Arrow "
        f"{dtype} form ({detail}); nothing was written. Values without one: numeric NaN or "
        "+-Infinity in a numeric(p,s) column, infinite dates and timestamps, arrays of two or "
        "more dimensions or not starting at 1. Fix the value in the source, or change the column's type there (cast "
        "it, e.g. to text, which Delta carries as the value's Postgres text)"
    )

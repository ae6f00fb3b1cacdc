"""Columns whose Delta type cannot take the read's type without changing its values.

delta-rs casts a batch into the table's types. For a list written into a string column
(tables written by pgflow before arrays became lists held JSON text there) the cast
succeeds and writes Arrow's own list rendering: every later row would differ in form from
the earlier ones. Such a column stops the load, before anything is written.
"""

from __future__ import annotations

import polars as pl

from pgflow.sources.arrow import ArrowRead


class ColumnRetyped(ValueError):
    """A column's Delta type and the read's type differ in kind (list or not); names it."""


def _is_list(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List | pl.Array)


def check_list_columns(table_types: dict[str, pl.DataType], read: ArrowRead, path: str) -> None:
    """Refuse a column that is a list in the read and not in the table, or the reverse."""
    mismatched = [
        f"{name} (Delta {have}, source {want})"
        for name, want in read.schema.items()
        if (have := table_types.get(name)) is not None and _is_list(have) != _is_list(want)
    ]
    if mismatched:
        raise ColumnRetyped(
            f"the Delta table at {path} holds column(s) {', '.join(mismatched)} in another form "
            "than this load writes (arrays are lists; tables written by older pgflow versions "
            "kept some as JSON text); nothing was written. Run once with reset to rewrite the "
            "table in the current form"
        )

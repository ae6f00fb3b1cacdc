"""Dates and timestamps as Arrow: whole days / microseconds since 1970, any year Postgres has.

Postgres prints years before 1 as "0044-03-15 BC" and past 9999 with five digits, which a
date parser would refuse or misread. The read sends numbers instead, computed by Postgres:
days since 1970-01-01 for a date, microseconds since 1970-01-01 00:00 for a timestamp
(UTC instants for timestamptz), which Arrow's date32 and timestamp[us] hold for every year
Postgres does (a number is also cheaper to print and to parse than a date). +-infinity has
no Arrow form: it travels as its text, fails the conversion, and `out_of_range` names it.
Values from year 262143 on (which delta-rs cannot write) do the same.
"""

from __future__ import annotations

import polars as pl

from pgflow.sources.arrow_types import Finish

# From year 262143 on delta-rs cannot compute a file's statistics (it panics): sent as text.
DATE_SQL = (
    "CASE WHEN isfinite({0}) AND {0} < '262143-01-01' THEN ({0} - DATE '1970-01-01')::text"
    " ELSE ({0})::text END"
)
TIMESTAMP_SQL = (
    "CASE WHEN isfinite({0}) AND {0} < '262143-01-01' THEN"
    " (extract(epoch FROM {0}) * 1000000)::bigint::text ELSE ({0})::text END"
)


def date_from_days(raw: pl.Expr) -> pl.Expr:
    return raw.cast(pl.Int32, strict=True).cast(pl.Date)


def timestamp_from_micros(zoned: bool) -> Finish:
    def finish(raw: pl.Expr) -> pl.Expr:
        naive = raw.cast(pl.Int64, strict=True).cast(pl.Datetime("us"))
        return naive.dt.replace_time_zone("UTC") if zoned else naive

    return finish


def out_of_range(values: pl.Series) -> str | None:
    """The first value that was sent as text (no Arrow form), or None."""
    found = values.filter(~values.str.contains(r"^-?\d+$")).head(1)
    return None if found.len() == 0 else found[0]

"""The day, month or year RANGE partitions create_partitions makes for a date/time key.

All date arithmetic is Postgres' own, on the typed values: BC dates, 29 February, the last
day of a year and daylight-saving days come out as Postgres computes them. A timestamptz key
is cut at midnights of one time zone: the one in which the target's existing partitions are
whole days/months/years: the connection's TimeZone at connect (the server's, database's or
role's default, or `options=-c TimeZone=...` in its URI) is tried first, then UTC; with no
partitions yet, the connection's. (The load itself runs with TimeZone pinned to UTC for its
text COPY, so a TimeZone in session_settings does not reach it.) Bounds travel as text typed
by the same session, so they round-trip whatever its DateStyle.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgflow.config.model import PARTITION_INTERVALS, PartitionInterval
from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sinks.postgres.partition_bounds import Partition, bound_datums

# format_type() of the key types create_partitions can cut into days, months and years.
TIMESTAMPTZ = "timestamp with time zone"
DATE_TYPES = ("date", "timestamp without time zone", TIMESTAMPTZ)
_SUFFIX_FORMAT = {"day": "YYYYMMDD", "month": "YYYYMM", "year": "YYYY"}


class IntervalUnknown(ValueError):
    """The width of new RANGE partitions cannot be told; nothing was written."""


@dataclass(frozen=True)
class RangeCut:
    """How new RANGE partitions are cut: their width, and for timestamptz the time zone."""

    unit: PartitionInterval
    zone: str | None  # None: the key is a date or a timestamp without time zone


@dataclass(frozen=True)
class NewRange:
    lower: str  # the bounds as text of the key's type
    upper: str
    suffix: str  # yyyymmdd / yyyymm / yyyy, `_bc` added before the Common Era


def _local(value: sql.Composable, type_sql: str, zone: str | None) -> sql.Composable:
    """`value` as a timestamp without time zone: a wall-clock time in `zone`."""
    if zone is not None:
        return sql.SQL("({} AT TIME ZONE {})").format(value, sql.Literal(zone))
    return sql.SQL("CAST({} AS timestamp)").format(value)


def _back(local: sql.Composable, type_sql: str, zone: str | None) -> sql.Composable:
    """A wall-clock time back as the key's type."""
    if zone is not None:
        return sql.SQL("({} AT TIME ZONE {})").format(local, sql.Literal(zone))
    return sql.SQL("CAST({} AS {})").format(local, sql.SQL(type_sql))


def choose_cut(
    ctx: ApplyContext, type_sql: str, partitions: list[Partition], given: PartitionInterval | None
) -> RangeCut:
    """The interval given, or the one every existing RANGE partition is (in one zone)."""
    bounds = _finite_bounds(partitions)
    zones: list[str | None] = [None]
    if type_sql == TIMESTAMPTZ:
        # The load pins TimeZone to UTC (SET LOCAL, for text COPY): the connection's own
        # zone is the one it started with (server, database or role default, or the URI's
        # options=-c TimeZone=...).
        row = ctx.conn.execute("SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'")
        found = row.fetchone()
        zones = [str(found[0]) if found else "UTC", "UTC"]
    for zone in zones:
        unit = _aligned_unit(ctx, type_sql, bounds, zone, given) if bounds else None
        if unit is not None:
            return RangeCut(unit, zone)
    if given is not None:
        return RangeCut(given, zones[0])
    shown = ", ".join(f"[{lo}, {hi})" for lo, hi in bounds[:3]) or "none"
    raise IntervalUnknown(
        f"create_partitions cannot tell the interval of {ctx.target}'s partitions (bounds: "
        f"{shown}): they are not all whole days, months or years"
        f"{' in one time zone' if type_sql == TIMESTAMPTZ else ''}; nothing was written. "
        f"Set sink.strategy.partition_interval: day, month or year"
    )


def _finite_bounds(partitions: list[Partition]) -> list[tuple[str, str]]:
    bounds = []
    for partition in partitions:
        datums = bound_datums(partition.bound, "r") if not partition.is_default else None
        if datums and datums[0][1] is not None and datums[1][1] is not None:
            bounds.append((datums[0][1], datums[1][1]))
    return bounds


def _aligned_unit(
    ctx: ApplyContext,
    type_sql: str,
    bounds: list[tuple[str, str]],
    zone: str | None,
    given: PartitionInterval | None,
) -> PartitionInterval | None:
    """The smallest unit of which every bound pair is exactly one, aligned, in `zone`."""
    lo = _local(sql.SQL("CAST(b.lo AS {})").format(sql.SQL(type_sql)), type_sql, zone)
    hi = _local(sql.SQL("CAST(b.hi AS {})").format(sql.SQL(type_sql)), type_sql, zone)
    rows = sql.SQL(", ").join(sql.SQL("({}, {})").format(sql.SQL(a), sql.SQL(b)) for a, b in bounds)
    units = [given] if given else list(PARTITION_INTERVALS)
    query = sql.SQL(
        "SELECT u.unit FROM unnest({units}::text[]) WITH ORDINALITY AS u(unit, o)"
        " WHERE (SELECT bool_and(date_trunc(u.unit, {lo}) = {lo}"
        " AND {lo} + CAST('1 ' || u.unit AS interval) = {hi})"
        " FROM (VALUES {rows}) AS b(lo, hi)) ORDER BY u.o LIMIT 1"
    ).format(units=sql.Literal(units), lo=lo, hi=hi, rows=rows)
    found = ctx.conn.execute(query).fetchone()
    return next((u for u in PARTITION_INTERVALS if found and u == found[0]), None)


def new_ranges(
    ctx: ApplyContext,
    column: str,
    type_sql: str,
    cut: RangeCut,
    values: sql.Composable,
    outside: sql.Composable,
) -> list[NewRange]:
    """One range per distinct day/month/year of the staged `values` (relation `s`) matching
    `outside`."""
    value = _local(sql.Identifier("s", column), type_sql, cut.zone)
    lower = sql.SQL("date_trunc({}, {})").format(sql.Literal(cut.unit), value)
    step = sql.SQL("CAST({} AS interval)").format(sql.Literal(f"1 {cut.unit}"))
    query = sql.SQL(
        "SELECT CAST({lo} AS text), CAST({hi} AS text),"
        " to_char(l, {fmt}) || CASE WHEN l < '0001-01-01' THEN '_bc' ELSE '' END"
        " FROM (SELECT DISTINCT {lower} AS l FROM {values}"
        " WHERE {col} IS NOT NULL AND {outside}) AS v ORDER BY l"
    ).format(
        lo=_back(sql.SQL("l"), type_sql, cut.zone),
        hi=_back(sql.SQL("(l + {})").format(step), type_sql, cut.zone),
        fmt=sql.Literal(_SUFFIX_FORMAT[cut.unit]),
        lower=lower,
        values=values,
        col=sql.Identifier("s", column),
        outside=outside,
    )
    return [NewRange(lo, hi, suffix) for lo, hi, suffix in ctx.conn.execute(query)]

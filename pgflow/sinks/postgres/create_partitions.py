"""Partitions for the staged values of a load into a declaratively partitioned target.

`prepare_partitions(ctx)` runs in the load's transaction before a strategy writes a row
(incremental_append, incremental_merge with delete_insert or upsert; partition_replace with
create_partitions). Into a target partitioned by RANGE or LIST on one column:

- without `create_partitions`, staged values no partition accepts (a DEFAULT partition takes
  any value, as Postgres routes it) fail the load before anything is written, naming up to
  five of them and the fix;
- with it, each such value gets a partition: for RANGE a day, month or year (partition_ranges),
  for LIST one per value, named `<table>_<yyyymmdd|yyyymm|yyyy>` / `<table>_<value slug>`
  (a number is added when the name is taken). A value the DEFAULT partition would take gets
  its own partition too, unless the DEFAULT already holds rows of it: Postgres cannot move
  them, so the load is refused naming the fix. They are created in the load's transaction, so
  a failed load leaves none. The parent is locked (SHARE UPDATE EXCLUSIVE, which conflicts
  only with itself and DDL) before the partitions are read again, so two loads needing the
  same partition take turns: the second finds it and creates nothing.

The target is read from the catalog, as it is now; `create_partitions` on a target that is not
partitioned so is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import re

import psycopg
from psycopg import sql

from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sinks.postgres.partition_bounds import (
    SAMPLE_VALUES,
    Blocker,
    Layout,
    Partition,
    read_layout,
)
from pgflow.sinks.postgres.partition_ranges import DATE_TYPES, choose_cut, new_ranges

MAX_NAME_BYTES = 63  # Postgres truncates longer identifiers


class PartitionsMissing(ValueError):
    """Staged values that no partition of the target accepts; nothing was written."""


class CreatePartitionsRefused(ValueError):
    """create_partitions cannot make the partitions this load needs; nothing was written."""


def prepare_partitions(ctx: ApplyContext) -> list[str]:
    """Check, or with create_partitions create, the partitions the staged values need;
    the partitions created (schema-qualified)."""
    create = ctx.strategy.create_partitions
    if not create and not ctx.target_info.is_partitioned:
        return []
    column = _key_column(ctx)
    if column is None or column not in ctx.columns:
        if create:
            raise CreatePartitionsRefused(_not_partitioned(ctx, column))
        return []
    layout = read_layout(ctx, column)
    if isinstance(layout, Blocker):
        if create:
            raise CreatePartitionsRefused(
                f"sink.strategy.create_partitions: {layout.reason}; nothing was written. "
                f"Fix: {layout.fix}, or remove create_partitions"
            )
        return []
    if not create:
        _check_routed(ctx, column, layout)
        return []
    if not _values_outside(ctx, column, layout):
        return []
    # Someone else may be creating them: take turns, then read the partitions again.
    ctx.log.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(ctx.target_sql))
    layout = read_layout(ctx, column)
    assert not isinstance(layout, Blocker)  # the lock keeps its shape
    return _create(ctx, column, layout)


def _key_column(ctx: ApplyContext) -> str | None:
    """The target's partition key when it is one plain column; None otherwise."""
    row = ctx.conn.execute(
        "SELECT a.attname FROM pg_partitioned_table pt"
        " JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]"
        " WHERE pt.partrelid = to_regclass(%s) AND pt.partnatts = 1",
        (ctx.target_sql.as_string(ctx.conn),),
    ).fetchone()
    return None if row is None else str(row[0])


def _not_partitioned(ctx: ApplyContext, column: str | None) -> str:
    if column is not None:
        return (
            f"sink.strategy.create_partitions: {ctx.target} is partitioned by {column}, which "
            f"the source does not deliver; nothing was written. Select {column} in the source"
        )
    return (
        f"sink.strategy.create_partitions: {ctx.target} is not a table partitioned by RANGE "
        f"or LIST on one column, so there are no partitions to create; nothing was written. "
        f"Remove create_partitions, or re-create the target with PARTITION BY RANGE (column)"
    )


def _outside(partitions: list[Partition]) -> sql.Composable:
    """True for a staged row (alias `s`, unqualified column) no partition listed accepts."""
    if not partitions:
        return sql.SQL("true")
    return sql.SQL("({}) IS NOT TRUE").format(
        sql.SQL(" OR ").join(
            sql.SQL("({})").format(sql.SQL(p.constraint or "true")) for p in partitions
        )
    )


def _distinct(ctx: ApplyContext, column: str) -> sql.Composable:
    """The distinct staged values as relation `s`: each is checked against the partitions'
    constraints once, however many rows carry it."""
    return sql.SQL("(SELECT DISTINCT {} FROM {}) AS s").format(
        sql.Identifier(column), ctx.staging_sql
    )


def _values_outside(ctx: ApplyContext, column: str, layout: Layout) -> bool:
    regular = [p for p in layout.partitions if not p.is_default]
    row = ctx.conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {})").format(
            _distinct(ctx, column), _outside(regular)
        )
    ).fetchone()
    return bool(row and row[0])


def _check_routed(ctx: ApplyContext, column: str, layout: Layout) -> None:
    """PartitionsMissing when a staged value has no partition (the DEFAULT one counts)."""
    outside = _outside(layout.partitions)
    value = sql.Identifier("s", column)
    row = ctx.conn.execute(
        sql.SQL(
            "SELECT count(*), (array_agg({value}::text ORDER BY {value} NULLS FIRST))[1:{n}]"
            " FROM {distinct} WHERE {outside}"
        ).format(
            value=value,
            n=sql.Literal(SAMPLE_VALUES),
            distinct=_distinct(ctx, column),
            outside=outside,
        )
    ).fetchone()
    if row is None or not row[0]:
        return
    count, sample = row[0], list(row[1] or [])
    shown = ", ".join("NULL" if v is None else sql.Literal(v).as_string(ctx.conn) for v in sample)
    more = f" and {count - len(sample)} more" if count > len(sample) else ""
    raise PartitionsMissing(
        f"the source has rows whose {column} has no partition in {ctx.target}: {shown}{more}; "
        f"nothing was written. Fix: set sink.strategy.create_partitions: true (the load then "
        f"creates them), create them beforehand (CREATE TABLE ... PARTITION OF {ctx.target} "
        f"FOR VALUES ...), or filter those rows out of the source"
    )


def _create(ctx: ApplyContext, column: str, layout: Layout) -> list[str]:
    regular = [p for p in layout.partitions if not p.is_default]
    outside = _outside(regular)
    taken = _names_in_schema(ctx)
    created: list[str] = []
    for bound, suffix in _new_bounds(ctx, column, layout, regular, outside):
        name = _free_name(ctx.target.name, suffix, taken)
        _create_one(ctx, name, bound, layout.default_partition)
        taken.add(name)
        created.append(f"{ctx.target.schema}.{name}")
    return created


def _new_bounds(
    ctx: ApplyContext,
    column: str,
    layout: Layout,
    regular: list[Partition],
    outside: sql.Composable,
) -> list[tuple[sql.Composable, str]]:
    """(FOR VALUES ..., name suffix) of each partition to create."""
    declared = ctx.target_info.column(column)
    type_sql = declared.type_sql if declared is not None else ""
    if layout.key.strategy == "l":
        return _list_bounds(ctx, column, outside)
    if type_sql not in DATE_TYPES:
        raise CreatePartitionsRefused(
            f"sink.strategy.create_partitions makes day, month or year RANGE partitions: the "
            f"key {column} of {ctx.target} is {type_sql}, not a date or timestamp; nothing was "
            f"written. Create its partitions beforehand"
        )
    _refuse_null_range(ctx, column)
    cut = choose_cut(ctx, type_sql, regular, ctx.strategy.partition_interval)
    return [
        (
            sql.SQL("FOR VALUES FROM ({}) TO ({})").format(
                sql.Literal(r.lower), sql.Literal(r.upper)
            ),
            r.suffix,
        )
        for r in new_ranges(ctx, column, type_sql, cut, _distinct(ctx, column), outside)
    ]


def _refuse_null_range(ctx: ApplyContext, column: str) -> None:
    row = ctx.conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} IS NULL)").format(
            ctx.staging_sql, sql.Identifier(column)
        )
    ).fetchone()
    if row and row[0]:
        raise CreatePartitionsRefused(
            f"the source has rows whose {column} is NULL, which no RANGE partition of "
            f"{ctx.target} can hold; nothing was written. Filter them out, or add a DEFAULT "
            f"partition (CREATE TABLE ... PARTITION OF {ctx.target} DEFAULT)"
        )


def _list_bounds(
    ctx: ApplyContext, column: str, outside: sql.Composable
) -> list[tuple[sql.Composable, str]]:
    rows = ctx.conn.execute(
        sql.SQL("SELECT CAST({} AS text) FROM {} WHERE {} ORDER BY 1").format(
            sql.Identifier("s", column), _distinct(ctx, column), outside
        )
    ).fetchall()
    bounds: list[tuple[sql.Composable, str]] = []
    for (text,) in rows:
        literal = sql.SQL("NULL") if text is None else sql.Literal(text)
        bounds.append((sql.SQL("FOR VALUES IN ({})").format(literal), _slug(text)))
    return bounds


def _slug(text: str | None) -> str:
    """A name suffix for a LIST value: its ASCII letters and digits, else a hash of it."""
    if text is None:
        return "null"
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]
    return slug or "v" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _names_in_schema(ctx: ApplyContext) -> set[str]:
    rows = ctx.conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s",
        (ctx.target.schema,),
    )
    return {str(r[0]) for r in rows}


def _free_name(table: str, suffix: str, taken: set[str]) -> str:
    """`<table>_<suffix>`, shortened to fit 63 bytes, with `_2`, `_3`... when taken."""
    for n in range(1, 10_000):
        tail = f"_{suffix}" if n == 1 else f"_{suffix}_{n}"
        head = table
        while len((head + tail).encode()) > MAX_NAME_BYTES:
            head = head[:-1]
        if head + tail not in taken:
            return head + tail
    raise CreatePartitionsRefused(f"no free name for a partition {table}_{suffix}")


def _create_one(ctx: ApplyContext, name: str, bound: sql.Composable, default: str | None) -> None:
    table = sql.Identifier(ctx.target.schema, name)
    try:
        ctx.log.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(table, ctx.target_sql, bound)
        )
    except psycopg.errors.CheckViolation:  # the DEFAULT partition holds rows of the new one
        raise CreatePartitionsRefused(
            f"the DEFAULT partition {default} of {ctx.target} already holds rows that belong "
            f"in a new partition {bound.as_string(ctx.conn)}; nothing was written. Postgres "
            f"cannot move them: move those rows out of the DEFAULT partition (or detach it), "
            f"then load again"
        ) from None
    except psycopg.errors.InvalidObjectDefinition as exc:  # "would overlap partition ..."
        raise CreatePartitionsRefused(
            f"create_partitions: the new partition {ctx.target.schema}.{name} "
            f"({bound.as_string(ctx.conn)}) of {ctx.target} was refused: "
            f"{exc.diag.message_primary}; nothing was written. Set "
            f"sink.strategy.partition_interval to the width of its partitions, or create "
            f"this one beforehand"
        ) from None

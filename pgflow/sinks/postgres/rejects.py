"""`on_bad_rows: reject`: rows the target refuses go to `<schema>._pgflow_rejected_<table>`.

A rejecting load first runs as a `fail` load would, under a savepoint (flows/postgres_fill);
only after that bulk attempt failed on a row does it come here, to its rejecting pass. The
fill COPYs the source as text into a temporary table of text columns (text always loads), then
casts the rows into the target itself when the load fills it (truncate_insert, a first load),
else into a temporary table with the target's columns, defaults, NOT NULLs and CHECK
constraints (not its unique indexes: repeated keys are the key policy's business), whose rows
then fill staging in the order they arrived. The rows are cast in chunks, one INSERT each;
a chunk that fails with a row-level error (SQLSTATE class 22, data, or 23, integrity, but not
23505) is bisected, each half under a savepoint, down to the single rows to reject. All of it,
the rejected rows included, is in the load's transaction: a crash loses and duplicates
nothing. What rejected rows mean for an incremental position: rejects_cursor.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres import staging
from pgflow.sinks.postgres.ddl import create_shared_object
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import TableSource

REJECTED_PREFIX = "_pgflow_rejected_"
ARRIVAL = "_pgflow_rn"  # arrival number of a raw row
CHUNK_ROWS = 10_000  # raw rows cast in one statement, before any bisection


@dataclass
class Rejects:
    """The rejecting of one load: who records it, and how many rows it rejected so far."""

    pipeline: str
    enabled: bool
    copies: list[staging.CopyStats]  # the load's: the COPY of the source is appended
    run_id: str = ""
    progress: staging.ProgressCallback | None = None
    count: int = 0
    raw: TableName | None = None  # the raw rows of this load (a temporary table)
    target: TableName | None = None
    columns: tuple[str, ...] = ()  # the source's, as the raw table holds them
    raw_indexed: bool = False  # by arrival number, once a range failed (bisection)
    rejected_rows: list[int] = field(default_factory=list)  # their arrival numbers

    def metadata(self) -> dict[str, int]:
        return {"rows_rejected": self.count} if self.enabled else {}


def rejected_table(target: TableName) -> TableName:
    """`<schema>._pgflow_rejected_<table>`, the table name cut to fit 63 bytes."""
    name = target.name.encode()[: 63 - len(REJECTED_PREFIX)].decode(errors="ignore")
    return TableName(target.schema, REJECTED_PREFIX + name)


def is_row_error(error: psycopg.Error) -> bool:
    """A value or constraint error of one row (not a repeated key, not the server's)."""
    state = error.sqlstate or ""
    return state.startswith("22") or (state.startswith("23") and state != "23505")


def fill(
    log: SqlLog, source: TableSource, target: TableName, table: TableName, rejects: Rejects
) -> int:
    """COPY the source into `table` (`target`, or a table shaped like it), keeping the rows
    the target refuses in the rejected table; the rows read."""
    columns = source.info.column_names
    raw = _temp_table(
        log,
        "raw",
        sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in columns),
    )
    log.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint GENERATED ALWAYS AS IDENTITY").format(
            raw.identifier(), sql.Identifier(ARRIVAL)
        )
    )
    with closing(source.copy_out(columns, "text")) as chunks:
        copied = staging.copy_into(log, raw, columns, chunks, "text", rejects.progress)
    source.close()
    rejects.raw, rejects.target, rejects.columns = raw, target, tuple(columns)
    rejected_before = rejects.count
    types = cast_types(log, target, columns)
    if table == target:  # it has the constraints: the good rows go straight in
        _check_all(_Move(log, raw, target, columns, types, False, rejects, target), copied.rows)
    else:
        checked = _checked_table(log, target, columns)
        move = _Move(log, raw, checked, columns, types, True, rejects, target)
        _check_all(move, copied.rows)
        _insert_in_order(log, checked, table, columns)
    rejects.copies.append(copied)
    return copied.rows - (rejects.count - rejected_before)


def _insert_in_order(
    log: SqlLog, checked: TableName, table: TableName, columns: Sequence[str]
) -> None:
    """The checked rows into `table` in their order of arrival (keep_last relies on it)."""
    log.execute(
        sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} ORDER BY {}").format(
            table.identifier(),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            checked.identifier(),
            sql.Identifier(ARRIVAL),
        )
    )


def _temp_table(log: SqlLog, kind: str, body: sql.Composable) -> TableName:
    table = TableName("pg_temp", f"_pgflow_{kind}_{secrets.token_hex(4)}")
    log.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(sql.Identifier(table.name), body)
    )
    return table


def _checked_table(log: SqlLog, target: TableName, columns: Sequence[str]) -> TableName:
    """A temporary table with the target's columns, defaults, NOT NULLs and CHECKs. A column
    the source lacks may be NULL there: the target fills it (identity, default) itself."""
    body = sql.SQL("LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS").format(target.identifier())
    checked = _temp_table(log, "checked", body)
    rows = log.conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped AND attnotnull",
        (checked.identifier().as_string(log.conn),),
    ).fetchall()
    for (name,) in rows:
        if name not in columns:
            log.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
                    checked.identifier(), sql.Identifier(name)
                )
            )
    log.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(
            checked.identifier(), sql.Identifier(ARRIVAL)
        )
    )
    return checked


def cast_types(log: SqlLog, target: TableName, columns: Sequence[str]) -> list[sql.SQL]:
    """The target's column types without their modifiers: the text is cast to the type, and
    the assignment into the column applies the modifier (a too long varchar(n) value fails,
    where an explicit cast to varchar(n) would cut it)."""
    rows: dict[str, str] = dict(
        log.conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (target.identifier().as_string(log.conn),),
        ).fetchall()
    )
    return [sql.SQL(rows[c]) for c in columns]


@dataclass(frozen=True)
class _Move:
    """Raw rows into `into` (the checked table, numbered; or the target itself), cast."""

    log: SqlLog
    raw: TableName
    into: TableName
    columns: Sequence[str]
    types: list[sql.SQL]
    numbered: bool  # `into` keeps the arrival number
    rejects: Rejects
    target: TableName

    def query(self, first: int, last: int) -> sql.Composed:
        casts = [
            sql.SQL("CAST(r.{} AS {})").format(sql.Identifier(c), t)
            for c, t in zip(self.columns, self.types, strict=True)
        ]
        names = list(map(sql.Identifier, self.columns))
        if self.numbered:
            casts.append(sql.SQL("r.{}").format(sql.Identifier(ARRIVAL)))
            names.append(sql.Identifier(ARRIVAL))
        return sql.SQL(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} AS r"
            " WHERE r.{} BETWEEN {} AND {}"
        ).format(
            self.into.identifier(),
            sql.SQL(", ").join(names),
            sql.SQL(", ").join(casts),
            self.raw.identifier(),
            sql.Identifier(ARRIVAL),
            sql.Literal(first),
            sql.Literal(last),
        )


def _check_all(move: _Move, rows: int) -> None:
    """Move raw rows 1..`rows`. This pass runs after a bulk attempt failed on a row, so
    ranges of CHUNK_ROWS are tried rather than all rows at once: a bad row costs bisecting
    its chunk, not halves of the whole table (10 bad rows among 300,000, full refresh:
    2.2 s against 3.9 s bisecting from all rows)."""
    if rows > CHUNK_ROWS:
        _index_arrival(move)
    for first in range(1, rows + 1, CHUNK_ROWS):
        _check_range(move, first, min(first + CHUNK_ROWS - 1, rows))


def _check_range(move: _Move, first: int, last: int) -> None:
    """Move raw rows first..last; bisect a range that fails on a bad row."""
    if last < first:
        return
    try:
        with move.log.conn.transaction():  # a savepoint: a failed range leaves nothing behind
            move.log.conn.execute(move.query(first, last))
        return
    except psycopg.Error as error:
        if not is_row_error(error):
            raise
        if first == last:
            _reject(move, first, error)
            return
    _index_arrival(move)
    middle = (first + last) // 2
    _check_range(move, first, middle)
    _check_range(move, middle + 1, last)


def _index_arrival(move: _Move) -> None:
    """Index the raw rows' arrival number, so each range (a chunk, a half) reads its rows,
    not the whole table."""
    if move.rejects.raw_indexed:
        return
    move.log.execute(
        sql.SQL("CREATE INDEX ON {} ({})").format(move.raw.identifier(), sql.Identifier(ARRIVAL))
    )
    move.rejects.raw_indexed = True


def _reject(move: _Move, rn: int, error: psycopg.Error) -> None:
    """Record raw row `rn` with its error: SQLSTATE and Postgres' message, never the detail
    (which may quote other values). A message naming the checked table names the target."""
    log, raw, rejects, target = move.log, move.raw, move.rejects, move.target
    primary = (error.diag.message_primary or str(error)).replace(
        f'"{move.into.name}"', f'"{target.name}"'
    )
    message = f"{error.sqlstate}: {primary}"
    rejected = rejected_table(target)
    if rejects.count == 0:
        create_shared_object(
            log,
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (rejected_at timestamptz NOT NULL DEFAULT now(),"
                " run_id text NOT NULL, pipeline text NOT NULL, error text NOT NULL,"
                ' "row" jsonb NOT NULL)'
            ).format(rejected.identifier()),
        )
    log.conn.execute(
        sql.SQL(
            'INSERT INTO {} (run_id, pipeline, error, "row") SELECT %s, %s, %s,'
            " to_jsonb(r) - %s FROM {} AS r WHERE r.{} = %s"
        ).format(rejected.identifier(), raw.identifier(), sql.Identifier(ARRIVAL)),
        (rejects.run_id, rejects.pipeline, message, ARRIVAL, rn),
    )
    rejects.count += 1
    rejects.rejected_rows.append(rn)

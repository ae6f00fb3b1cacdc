"""Create a target table in the sink from the source catalog, with faithful types.

Type mapping, stated once:
- built-in types keep their exact declaration (numeric(12,2), varchar(20), timestamptz, uuid,
  jsonb, arrays of built-ins, ranges);
- enums are RE-CREATED in the target's schema with the same name and labels (an existing enum
  of that name must hold every source label);
- domains are MAPPED to their base type (a domain's CHECK guards the source's writes, not the
  replica's), arrays of domains to arrays of the base type;
- other user-defined types (composites, extension types, user ranges) are mapped to text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Literal

import psycopg
from psycopg import sql

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.sql_log import SqlLog, Statement
from pgflow.sources.catalog import FIRST_USER_OID, Column, TableInfo


class TargetSchemaError(RuntimeError):
    """The target exists but cannot take the source's rows; says which column and the fix."""


def create_shared_object(log: SqlLog, statement: Statement) -> None:
    """Run a CREATE of an object other loads may create at the same moment (a schema, an enum).

    Concurrent `CREATE ... IF NOT EXISTS` can still fail with a unique violation once the other
    transaction commits; the savepoint keeps our transaction usable, and the object exists.
    """
    try:
        with log.conn.transaction():
            log.execute(statement)
    except psycopg.errors.UniqueViolation:
        pass


def target_type(column: Column, target_schema: str) -> sql.Composable:
    if column.enum_name is not None:
        enum = sql.Identifier(target_schema, column.enum_name.name)
        return sql.SQL("{}[]").format(enum) if column.element_oid else enum
    if column.base_type_oid < FIRST_USER_OID:
        return sql.SQL(column.base_type_sql)  # catalog output: trusted type syntax
    if column.element_oid and column.element_oid < FIRST_USER_OID:
        return sql.SQL(f"{column.element_type_sql}[]")
    return sql.SQL("text")


def ensure_enums(log: SqlLog, source: TableInfo, target_schema: str) -> None:
    seen: set[str] = set()
    for column in source.columns:
        if column.enum_name is None or column.enum_name.name in seen:
            continue
        seen.add(column.enum_name.name)
        _ensure_enum(log, TableName(target_schema, column.enum_name.name), column.enum_labels)


def _ensure_enum(log: SqlLog, enum: TableName, labels: tuple[str, ...]) -> None:
    existing = log.conn.execute(
        "SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t"
        " JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid"
        " WHERE n.nspname = %s AND t.typname = %s",
        (enum.schema, enum.name),
    ).fetchone()
    if existing is None or existing[0] is None:
        create_shared_object(
            log,
            sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
                enum.identifier(),
                sql.SQL(", ").join(map(sql.Literal, labels)),
            ),
        )
        return
    missing = [label for label in labels if label not in existing[0]]
    if missing:
        # Labels as SQL literals and the type as a quoted name: the fix can be pasted into psql.
        name = enum.identifier().as_string(log.conn)
        literals = [sql.Literal(label).as_string(log.conn) for label in missing]
        raise TargetSchemaError(
            f"enum {name} in the sink lacks the source label(s) {', '.join(literals)}; add them "
            f"with ALTER TYPE {name} ADD VALUE {literals[0]} (one statement per label, outside "
            "a transaction) and run again"
        )


# Free room left on each page of a target that is upserted. An update that leaves the indexed
# columns alone then stays on its page as a HOT update: no new index entry and one heap page
# touched instead of two. Packed pages only gain that room once pruned after a first update
# (bench/README.md: the first 1% upsert of a 2M-row target 0.7 -> 0.5 s, WAL 210 -> 152 MB).
UPSERT_FILLFACTOR = 90


def fillfactor_for(strategy: StrategySpec) -> int | None:
    """The fillfactor of a target pgflow creates: the spec's, else room for upserts' in-place
    updates; None keeps the server's default (100, packed) for targets that are only
    appended to, replaced or rebuilt."""
    if strategy.fillfactor is not None:
        return strategy.fillfactor
    if strategy.mode == "incremental_merge" and strategy.merge_policy == "upsert":
        return UPSERT_FILLFACTOR
    return None


def create_target(
    log: SqlLog,
    source: TableInfo,
    target: TableName,
    unique_key: tuple[str, ...] = (),
    fillfactor: int | None = None,
) -> None:
    """CREATE the target like the source: columns, NOT NULLs and primary key.

    A spec `unique_key` other than the primary key gets a unique index (NULLS NOT DISTINCT,
    so NULL keys are one key), which keyed strategies use for lookups and upsert conflicts.
    """
    create_shared_object(
        log, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.schema))
    )
    ensure_enums(log, source, target.schema)
    parts = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            target_type(c, target.schema),
            sql.SQL(" NOT NULL") if c.not_null else sql.SQL(""),
        )
        for c in source.columns
    ]
    if source.primary_key:
        parts.append(
            sql.SQL("PRIMARY KEY ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, source.primary_key))
            )
        )
    storage: sql.Composable = sql.SQL("")
    if fillfactor is not None:
        storage = sql.SQL(" WITH (fillfactor = {})").format(sql.Literal(fillfactor))
    log.execute(
        sql.SQL("CREATE TABLE {} ({}){}").format(
            target.identifier(), sql.SQL(", ").join(parts), storage
        )
    )
    if unique_key and set(unique_key) != set(source.primary_key):
        create_unique_key_index(log, target, unique_key)


def ensure_fillfactor(log: SqlLog, target: TableName, fillfactor: int | None) -> None:
    """Give an existing target the spec's explicit fillfactor (None: leave it as it is).

    ALTER TABLE ... SET only changes how new rows are placed (existing pages are left as they
    are) and takes a lock that lets reads and writes go on. A partitioned target holds no
    rows: its partitions' own settings apply, so it is left alone."""
    if fillfactor is None:
        return
    row = log.conn.execute(
        "SELECT c.relkind, (SELECT o.option_value FROM pg_options_to_table(c.reloptions) o"
        " WHERE o.option_name = 'fillfactor') FROM pg_class c WHERE c.oid = %s::regclass",
        (target.identifier().as_string(log.conn),),
    ).fetchone()
    if row is None or row[0] != "r" or row[1] == str(fillfactor):
        return
    log.execute(
        sql.SQL("ALTER TABLE {} SET (fillfactor = {})").format(
            target.identifier(), sql.Literal(fillfactor)
        )
    )


def create_unique_key_index(log: SqlLog, target: TableName, unique_key: tuple[str, ...]) -> None:
    name = f"{target.name[:40]}_pgflow_key"
    log.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}) NULLS NOT DISTINCT").format(
            sql.Identifier(name),
            target.identifier(),
            sql.SQL(", ").join(map(sql.Identifier, unique_key)),
        )
    )


def lock_target(log: SqlLog, target: TableName) -> None:
    """Serialize loads of one target across processes, released when the transaction ends."""
    log.execute(_advisory_lock_sql("pg_advisory_xact_lock", target))


def lock_target_for_session(log: SqlLog, target: TableName) -> None:
    """lock_target's lock, held by the session of `log.conn` until that session ends.

    For a run that keeps its connection across many transactions and never unlocks early
    (the Delta sync): a lost or closed connection releases the lock with its session."""
    log.execute(_advisory_lock_sql("pg_advisory_lock", target))


@contextmanager
def lending_target(conn: psycopg.Connection, target: TableName) -> Iterator[None]:
    """Inside holding_target on `conn`: let another session hold the target's lock for the
    block (a CDC table's backfill on a connection of its own), then take it back."""
    conn.execute(_advisory_lock_sql("pg_advisory_unlock", target))
    try:
        yield
    finally:
        conn.execute(_advisory_lock_sql("pg_advisory_lock", target))


@contextmanager
def holding_target(conn: psycopg.Connection, target: TableName) -> Iterator[None]:
    """lock_target's lock for a whole run of many transactions on `conn` (autocommit).

    The per-transaction lock_target calls on the same session still pass (advisory locks are
    re-entrant within a session); another run waits here until this one is done. A killed
    run's session ends, and with it the lock."""
    conn.execute(_advisory_lock_sql("pg_advisory_lock", target))
    try:
        yield
    finally:
        # A lost connection has released the lock with its session; never hide the error.
        with suppress(psycopg.Error):
            conn.execute(_advisory_lock_sql("pg_advisory_unlock", target))


_AdvisoryFunction = Literal["pg_advisory_xact_lock", "pg_advisory_lock", "pg_advisory_unlock"]


def _advisory_lock_sql(function: _AdvisoryFunction, target: TableName) -> sql.Composed:
    """`SELECT function(key)` on the target's advisory lock: the one home of its key."""
    key = sql.Literal(f"pgflow:{target}")
    return sql.SQL("SELECT {}(hashtextextended({}, 0))").format(sql.SQL(function), key)


def quote_table(conn: psycopg.Connection, table: TableName) -> str:
    return table.identifier().as_string(conn)


def with_suffix(name: str, suffix: str) -> str:
    """`name` + `suffix` within Postgres' 63-byte limit on names (longer ones are silently
    cut): the name is cut, never the suffix that makes the result unique."""
    return name.encode()[: 63 - len(suffix)].decode(errors="ignore") + suffix

"""Cheap probes of a source: has it changed since the position its target was loaded to?

Each probe answers from an index lookup, the cumulative statistics, a replication slot or a
Delta log, never from a scan of the table, so a sensor can run them every minute against an
OLTP database. A `Verdict` says stale or fresh, why (for the UI), and the evidence it saw: the
source state that makes the target stale, stable while the source does not change (it goes
into run keys, so one piece of evidence requests one run).

Probes run on an autocommit connection prepared by `prepare_session`: every statement is its
own transaction, which the statistics need (they are cached for the life of a transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from pgflow.config.model import TableName
from pgflow.sources import cdc
from pgflow.sources.activity import table_modifications
from pgflow.sources.base import Position
from pgflow.sources.catalog import TableNotFound, describe_table, table_exists
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.pgoutput import lsn_to_text
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS, apply_settings

# A probe must never hang a sensor tick behind a lock or a slow query on the source.
PROBE_SETTINGS = {"statement_timeout": "30s", "lock_timeout": "5s"}
# Output rows a slot probe may decode; it stops at the end of the transaction reaching this.
PEEK_CHANGES = 1000
# pgoutput messages that carry data: Insert, Update, Delete, Truncate (not Begin, Relation...).
_DATA_MESSAGES = tuple(ord(c) for c in "IUDT")


class ProbeError(RuntimeError):
    """The source cannot be probed as the spec says; the message says what is wrong."""


@dataclass(frozen=True)
class Verdict:
    stale: bool
    evidence: str  # e.g. "max=2026-01-01 00:00:00+00", "mods=1234", "lsn=0/1A2B", "v=7"
    reason: str


def prepare_session(conn: psycopg.Connection) -> None:
    """Timeouts, plus the text settings loads use, so cursor values render as they are stored."""
    if not conn.autocommit:
        raise ValueError("staleness probes need an autocommit connection")
    apply_settings(conn, {**PROBE_SETTINGS, **PORTABLE_TEXT_SETTINGS}, local=False)


# --- cursor column -------------------------------------------------------------------------

# A valid, non-partial btree index whose first column is `column`, on the table (a partitioned
# parent's index covers every partition) or, failing that, on every leaf partition.
_LEADING_INDEX = """
WITH target AS (
    SELECT to_regclass(%(table)s) AS oid
), tree AS (
    -- pg_partition_tree lists nothing for a plain table: it is its own, only leaf.
    SELECT t.relid, t.level, t.isleaf FROM target, pg_partition_tree(target.oid) AS t
    UNION
    SELECT c.oid, 0, true FROM target JOIN pg_class c ON c.oid = target.oid AND c.relkind = 'r'
), led AS (
    SELECT t.relid, t.level, t.isleaf, (
        SELECT min(ic.relname) FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = t.relid AND am.amname = 'btree' AND i.indisvalid
          AND i.indpred IS NULL AND a.attname = %(column)s
    ) AS index_name
    FROM tree t
)
SELECT COALESCE(
    (SELECT index_name FROM led WHERE level = 0),
    (SELECT min(index_name) FROM led WHERE isleaf HAVING bool_and(index_name IS NOT NULL))
)
"""


def cursor_index(conn: psycopg.Connection, table: TableName, column: str) -> str | None:
    """An index that makes max(`column`) an index lookup, or None (max would scan)."""
    qualified = table.identifier().as_string(conn)
    row = conn.execute(_LEADING_INDEX, {"table": qualified, "column": column}).fetchone()
    return row[0] if row else None


def column_verdict(
    conn: psycopg.Connection, table: TableName, column: str, stored: Position | None
) -> Verdict:
    """max(`column`) against the stored high-water mark; call only when `cursor_index` found one.

    Rows at the mark itself were read (loads read `>=` the mark), so only a larger max is new.
    """
    info = describe_table(conn, table)  # raises TableNotFound
    kind = info.column(column)
    if kind is None:
        raise ProbeError(f"'{column}' is not a column of {table}")
    identity = ColumnCursorSource(conn, table, column).identity
    mark = None
    if stored is not None and stored.source == identity and stored.value_type == kind.base_type_sql:
        mark = stored.value
    # The type comes from the catalog (format_type), as the loads' own cursor casts do.
    query = sql.SQL(
        "SELECT m::text, m > CAST(%s AS {type}) FROM (SELECT max({col}) AS m FROM {t}) s"
    )
    row = conn.execute(
        query.format(
            type=sql.SQL(kind.base_type_sql),
            col=sql.Identifier(column),
            t=table.identifier(),
        ),
        (mark,),
    ).fetchone()
    assert row is not None
    current, beyond = row
    evidence = f"max={current if current is not None else 'none'}"
    what = f"source max({column}) {current if current is not None else 'NULL (no rows)'}"
    if stored is None:
        return Verdict(True, evidence, f"never loaded (no stored position); {what}")
    if mark is None:
        return Verdict(
            True,
            evidence,
            f"the stored position is for {stored.source} ({stored.value_type}), not "
            f"{identity} ({kind.base_type_sql}): the next load reads everything; {what}",
        )
    if beyond:
        return Verdict(True, evidence, f"{what} > stored mark {mark}")
    # Equal, or lower (rows deleted): nothing past the mark. No rows: nothing to load.
    relation = "=" if current == mark else "<="
    return Verdict(False, evidence, f"{what} {relation} stored mark {mark}")


# --- statistics (xmin, full reads, cursor columns without an index) ------------------------


def statistics_verdict(
    conn: psycopg.Connection,
    table: TableName,
    recorded: int | None,
    unrecorded: str = "never loaded (no recorded modification count)",
) -> Verdict:
    """The table's insert+update+delete counter against the one the last load started from.

    `recorded` is None when no load recorded one; `unrecorded` then says why. Aborted writes
    count too, which costs at most an extra run; TRUNCATE does not count. The evidence names
    both counts: after a statistics reset the counter passes old values again.
    """
    current = table_modifications(conn, table)
    if current is None and not table_exists(conn, table):
        raise TableNotFound(f"table {table} does not exist (or is not a table)")
    if current is None:
        return Verdict(True, "mods=unknown", f"no statistics for {table}: cannot tell, so stale")
    if recorded is None:
        return Verdict(True, f"mods={current}", f"{unrecorded}; modifications {current} now")
    if current > recorded:
        return Verdict(
            True,
            f"mods={current}>{recorded}",
            f"{current - recorded} rows written since the last load "
            f"(modifications {current} > {recorded})",
        )
    if current < recorded:
        return Verdict(
            True,
            f"mods={current}<{recorded}",
            f"modifications {current} < {recorded} recorded at the last load: statistics were "
            "reset (or the table re-created), cannot tell, so stale",
        )
    return Verdict(
        False, f"mods={current}", f"no writes since the last load (modifications {current})"
    )


# --- CDC slot ------------------------------------------------------------------------------

# Data messages of transactions committed at or after %(after)s (a Begin carries its commit
# LSN: the running max over the stream is the current transaction's), and of the table: its
# relation OID follows the type byte of Insert, Update and Delete; a Truncate (rare, several
# relations) counts for every table. A NULL oid counts every table.
_PEEK = """
WITH m AS (
  SELECT lsn, data, max(CASE WHEN get_byte(data, 0) = ascii('B')
           THEN ('x' || encode(substring(data FROM 2 FOR 8), 'hex'))::bit(64)::bigint END)
         OVER (ORDER BY ord) AS commit_lsn
  FROM pg_logical_slot_peek_binary_changes(%(slot)s, %(upto)s::pg_lsn, %(n)s,
       'proto_version', '1', 'publication_names', %(publication)s, 'messages', 'false')
       WITH ORDINALITY AS p(lsn, xid, data, ord)
)
SELECT count(*),
       count(*) FILTER (WHERE get_byte(data, 0) = ANY(%(data_types)s)
         AND commit_lsn >= %(after)s
         AND (%(oid)s::oid IS NULL OR get_byte(data, 0) = ascii('T')
              OR substring(data FROM 2 FOR 4) = substring(int8send(%(oid)s::bigint) FROM 5))),
       max(lsn) FILTER (WHERE commit_lsn >= %(after)s)::text
FROM m
"""


@dataclass(frozen=True)
class SlotMember:
    """A table of a slot that several tables share: only its own changes count, and only
    those after its own position (the slot waits for the group's slowest table)."""

    table: TableName
    applied: Callable[[], int | None]  # its stored LSN, read when needed


def slot_verdict(
    conn: psycopg.Connection,
    slot: str,
    publication: str,
    loaded: Callable[[], bool],
    max_changes: int = PEEK_CHANGES,
    member: SlotMember | None = None,
) -> Verdict:
    """Changes for `publication` waiting in `slot`, peeked without consuming them.

    `loaded` says whether the target holds a CDC position: without one the next run takes a
    snapshot, whatever the slot holds. The slot's own health (missing after a load,
    invalidated) is not staleness: the slot health sensor reports it, and a run could not
    fix it without a reset. A never-loaded pipeline's evidence is the WAL position, so a
    failed first run is requested again once the WAL moves on.
    """
    flush = cdc.flush_lsn(conn)
    info = cdc.slot_info(conn, slot)
    at_flush = f"lsn={lsn_to_text(flush)}"
    if info is None:
        if loaded():
            return Verdict(
                False,
                at_flush,
                f"replication slot {slot} is missing although the target was loaded: not "
                "stale here; the slot health check reports it (a reset re-snapshots)",
            )
        return Verdict(True, at_flush, f"never loaded (replication slot {slot} not created yet)")
    if info.database != conn.info.dbname:
        raise ProbeError(
            f"replication slot {slot} belongs to database {info.database}, not "
            f"{conn.info.dbname}; choose another source.options.slot_name"
        )
    if info.active_pid is not None:
        return _in_use(slot, at_flush)
    if info.wal_status == "lost" or info.confirmed_flush is None:
        return Verdict(
            False,
            at_flush,
            f"replication slot {slot} was invalidated (wal_status {info.wal_status}): not stale "
            "here; the slot health check reports it (a reset re-snapshots)",
        )
    if not loaded():  # e.g. a first run died after creating the slot
        return Verdict(True, at_flush, f"never loaded (slot {slot} exists, no stored position)")
    confirmed = info.confirmed_flush
    applied = member.applied() if member else None
    confirmed = max(confirmed, applied or 0)
    if confirmed >= flush:
        return Verdict(
            False,
            f"lsn={lsn_to_text(confirmed)}",
            f"slot {slot} confirmed up to {lsn_to_text(confirmed)} = WAL flush position",
        )
    return _peek(conn, slot, publication, confirmed, flush, max_changes, member)


def _peek(
    conn: psycopg.Connection,
    slot: str,
    publication: str,
    confirmed: int,
    flush: int,
    n: int,
    member: SlotMember | None,
) -> Verdict:
    oid = None
    if member is not None:
        name = member.table.identifier().as_string(conn)
        found = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()
        oid = found[0] if found else None
    params = {
        "slot": slot,
        "publication": publication,
        "upto": lsn_to_text(flush),
        "n": n,
        "data_types": list(_DATA_MESSAGES),
        "after": confirmed,
        "oid": oid,
    }
    try:
        row = conn.execute(_PEEK, params).fetchone()
    except errors.ObjectInUse:
        return _in_use(slot, f"lsn={lsn_to_text(flush)}")  # a load took it since slot_info
    assert row is not None
    rows, data_rows, last = row
    behind = f"{flush - confirmed:,} bytes of WAL after {lsn_to_text(confirmed)}"
    if not data_rows:
        # Nothing for this publication: only other tables or databases wrote WAL.
        return Verdict(
            False,
            f"lsn={lsn_to_text(confirmed)}",
            f"no changes for publication {publication} in the {behind}",
        )
    # Evidence: the last change seen, stable while nothing new is written; when the peek
    # stopped at its bound there may be more, so say how far the WAL reaches instead.
    truncated = rows >= n
    evidence = f"lsn={lsn_to_text(flush) if truncated or last is None else last}"
    more = f" (the first {rows} messages; more may follow)" if truncated else ""
    return Verdict(
        True,
        evidence,
        f"{data_rows} data changes for publication {publication} wait in slot {slot}{more}, "
        f"in the {behind}",
    )


def _in_use(slot: str, evidence: str) -> Verdict:
    return Verdict(False, evidence, f"replication slot {slot} is in use: a load is running")


# --- Delta source --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeltaVersion:
    table_uri: str  # how the sync identifies the table in its stored position
    version: int


def delta_version(path: str, storage_options: Mapping[str, str] | None = None) -> DeltaVersion:
    """The Delta table's latest version, read from its log (no data file is opened)."""
    from deltalake import DeltaTable  # here: a code location without Delta never imports it

    table = DeltaTable(path, storage_options=dict(storage_options) if storage_options else None)
    return DeltaVersion(table.table_uri, table.version())


def version_verdict(current: DeltaVersion, synced: int | None) -> Verdict:
    """`synced`: the last Delta version whose sync into the target finished (None: none).

    The evidence names both versions: a re-created table counts its versions from 0 again.
    """
    version = current.version
    if synced is None:
        return Verdict(True, f"v={version}", f"nothing synced yet; Delta version {version} waits")
    if version != synced:
        relation = ">" if version > synced else "<"
        return Verdict(
            True, f"v={version}{relation}{synced}", f"Delta version {version}, synced {synced}"
        )
    return Verdict(False, f"v={version}", f"Delta version {version} = synced version")

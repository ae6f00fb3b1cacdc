"""The source and targets of the CDC-into-Delta kill sweep: two tables on one slot, `d1` into
a Delta table and `p1` into Postgres, a change of several transactions over both (each one's
place in the WAL and both tables' rows after it), and the targets read as comparable values.

The rows are hostile where CDC into Delta is fragile: 1 MB TOAST values that updates leave
unchanged (pgoutput sends them as "unchanged", the merge must keep the Delta row's value),
NaN and infinities, NULLs, a key deleted and inserted again in one transaction, deletes of rows
holding a TOAST value. A target's digest is computed in Python from typed values (Postgres via
psycopg, Delta via pyarrow), so the same digest means the same values, whatever the storage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import polars as pl
import psycopg
from deltalake import DeltaTable
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.reliability.kills.group_world import History
from pgflow_tests.reliability.kills.observe import PINNED, PROBE_APP

DELTA = "d1"  # the table CDC writes into Delta
PG = "p1"  # the table CDC writes into Postgres, on the same slot
TABLES = (DELTA, PG)
ROWS = 2000
COLUMNS = ("id", "qty", "note", "at", "score", "amount", "big")

SOURCE_DDL = """
CREATE TABLE public.{name} (id bigint PRIMARY KEY, qty integer NOT NULL, note text,
                            at timestamptz NOT NULL, score double precision,
                            amount numeric(12, 2), big text);
INSERT INTO public.{name}
SELECT g, g % 97, CASE WHEN g % 11 = 0 THEN NULL ELSE repeat(md5(g::text), 2) END,
       timestamptz '2024-01-01 00:00+00' + g * interval '1 minute',
       CASE g % 7 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity'::float8
            WHEN 2 THEN '-Infinity'::float8 ELSE (g / 3.0)::float8 END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE round(g / 7.0, 2) END,
       CASE WHEN g % 500 = 0
            THEN (SELECT string_agg(md5(g::text || '-' || i::text), '')
                  FROM generate_series(1, 32768) i)  -- 1 MB, stored out of line (TOAST)
       END
FROM generate_series(1, {rows}) g;
"""

# Source transactions over both tables; d1 changes in most of them, p1 in some.
CHANGES = (
    # d1's 1 MB rows updated without their TOAST column: sent as "unchanged"
    "UPDATE public.d1 SET qty = qty + 1000 WHERE id % 10 = 1 OR id % 500 = 0",
    "UPDATE public.p1 SET qty = qty + 1000 WHERE id % 10 = 2 OR id % 500 = 0;"
    " INSERT INTO public.d1 SELECT g, 1, 'new', now(), 'NaN', NULL, NULL"
    " FROM generate_series(100001, 100100) g",
    "DELETE FROM public.d1 WHERE id % 50 = 7;"
    " UPDATE public.p1 SET note = 'x' || id WHERE id % 20 = 3;"
    " UPDATE public.d1 SET big = repeat('y', 5000) || big WHERE id = 1000",
    # a key deleted and inserted again in one transaction: the last change per key wins
    "DELETE FROM public.d1 WHERE id = 5;"
    " INSERT INTO public.d1 VALUES (5, -5, 'again', now(), '-Infinity', 0.01, NULL);"
    " UPDATE public.d1 SET qty = -qty, amount = amount * 2 WHERE id % 25 = 4",
    "DELETE FROM public.p1 WHERE id % 40 = 9;"
    " UPDATE public.d1 SET note = NULL, score = 'Infinity' WHERE id % 10 = 5",
    "UPDATE public.d1 SET qty = 0 WHERE id % 30 = 11; DELETE FROM public.d1 WHERE id = 1500",
)
# The same, then d1 truncated and filled again in one transaction, then changed: the Delta
# table emptied at that place in the stream (the merge deletes every row the batch lacks).
TRUNCATE_CHANGES = (
    *CHANGES,
    "TRUNCATE public.d1; INSERT INTO public.d1 SELECT g, g % 5, 'after', now(), 'NaN', 1.5,"
    " NULL FROM generate_series(1, 300) g",
    "UPDATE public.d1 SET qty = qty + 1 WHERE id % 3 = 0; DELETE FROM public.d1 WHERE id > 290;"
    " UPDATE public.p1 SET qty = qty + 1 WHERE id % 7 = 0",
)
# A change before BEFORE, so that BEFORE is a streaming run's state, not a snapshot's.
WARM_UP = "UPDATE public.d1 SET qty = qty + 1 WHERE id <= 10; UPDATE public.p1 SET qty = 5"


def create_source(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        for name in TABLES:
            conn.execute(SOURCE_DDL.format(name=name, rows=ROWS).encode())  # fixed text
            conn.execute(sql.SQL("ANALYZE {}").format(TableName("public", name).identifier()))


def warm_up(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(WARM_UP)


def apply_changes(uri: str, changes: tuple[str, ...] = CHANGES) -> History:
    """Run `changes`, one transaction each, recording where they lie and the rows after each."""
    history = History()
    with psycopg.connect(uri, autocommit=True, options=PINNED) as conn:
        history.digests.append(_digests(conn))
        for statement in changes:
            history.began.append(_insert_lsn(conn))
            with conn.transaction():
                conn.execute(statement.encode())  # fixed text, several statements
            history.digests.append(_digests(conn))
        history.ended = _insert_lsn(conn)
    return history


def _insert_lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return lsn_to_int(row[0])


def _digests(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    return {
        name: d for name in TABLES if (d := pg_digest(conn, TableName("public", name))) is not None
    }


# -- digests --------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    """One value as text that is equal exactly when the values are (NaN equals NaN)."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if isinstance(value, str) and len(value) > 1000:
        return "md5:" + hashlib.md5(value.encode()).hexdigest()
    return str(value)


def rows_digest(rows: list[tuple[Any, ...]]) -> tuple[int, str]:
    """Row count and md5 of the rows' texts in key order."""
    digest = hashlib.md5()
    for row in sorted(rows, key=lambda r: int(r[0])):
        digest.update(("|".join(_value(v) for v in row) + "\n").encode())
    return len(rows), digest.hexdigest()


def pg_digest(conn: psycopg.Connection[Any], table: TableName) -> tuple[int, str] | None:
    """A Postgres table's digest; None when it does not exist."""
    found = conn.execute("SELECT to_regclass(%s)", (str(table),)).fetchone()
    if found is None or found[0] is None:
        return None
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table.identifier()
    )
    return rows_digest(conn.execute(query).fetchall())


def delta_digest(path: Path) -> tuple[int, str] | None:
    if not DeltaTable.is_deltatable(str(path)):
        return None
    frame = pl.read_delta(str(path), columns=list(COLUMNS))
    return rows_digest(list(frame.iter_rows()))


# -- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetState:
    digest: tuple[int, str] | None  # None: no target table
    position: int | None  # the stored LSN
    version: int | None = None  # Delta: the table version


def app_id(pipeline: str, slot: str) -> str:
    """The Delta app transaction id of the member (pgflow's delta_cdc_app_id: the pipeline and
    the position's source, `cdc:<table>:<slot>`)."""
    return f"pgflow-cdc:{pipeline}:cdc:public.{DELTA}:{slot}"


def delta_state(path: Path, slot: str) -> TargetState:
    if not DeltaTable.is_deltatable(str(path)):
        return TargetState(None, None)
    table = DeltaTable(str(path))
    return TargetState(
        delta_digest(path), table.transaction_version(app_id(DELTA, slot)), table.version()
    )


def pg_state(uri: str) -> tuple[TargetState, int]:
    """p1's target in the sink, and the sink's staging tables."""
    with psycopg.connect(uri, options=PINNED, application_name=PROBE_APP, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")
        digest = pg_digest(conn, TableName("landing", PG))
        has_state = conn.execute("SELECT to_regclass('_pgflow.pipeline_state')").fetchone()
        row = None
        if has_state and has_state[0] is not None:
            row = conn.execute(
                "SELECT value FROM _pgflow.pipeline_state"
                " WHERE target_schema = 'landing' AND target_table = %s",
                (PG,),
            ).fetchone()
        staging = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = '_pgflow_staging' AND c.relkind = 'r'"
        ).fetchone()
    state = TargetState(digest, lsn_to_int(row[0]) if row else None)
    return state, int(staging[0]) if staging else 0


def uncommitted_files(path: Path) -> int:
    """Data files in the folder that no commit of the log adds (a killed write's files)."""
    added: set[str] = set()
    for entry in (path / "_delta_log").glob("*.json"):
        for line in entry.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                added.add(unquote(action["add"]["path"]))
    if DeltaTable.is_deltatable(str(path)):
        added |= {
            unquote(uri).rsplit(str(path) + "/", 1)[-1] for uri in DeltaTable(str(path)).file_uris()
        }
    return len(set(_parquet(path)) - added)


def data_files(path: Path) -> tuple[int, int]:
    """Parquet files in the folder, and those the table's current version references."""
    on_disk = len(_parquet(path))
    if not DeltaTable.is_deltatable(str(path)):
        return on_disk, 0
    return on_disk, len(DeltaTable(str(path)).file_uris())


def _parquet(path: Path) -> list[str]:
    """The data files in a table's folder (its log's checkpoints are not)."""
    return [
        str(p.relative_to(path))
        for p in path.rglob("*.parquet")
        if p.relative_to(path).parts[0] != "_delta_log"
    ]

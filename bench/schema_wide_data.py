"""The schema-wide bench's data (bench/schema_wide.py): a generated schema of many tables of
mixed sizes and column types, the check of a tool's target schema against it (row counts per
table), and the peak number of client connections on a cluster while a tool runs."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.common import ORDERS_DDL, ORDERS_FILL, Finished, tail
from pgflow.config.wildcards import ListedTable, SchemaListing
from pgflow.localdb.cluster import ClusterInfo

# Three table shapes, taken in turn: (columns, SELECT of rows 1..%(hi)s).
PLAIN = (
    "id bigint {pk}, name text NOT NULL, amount numeric(12,2), created_at timestamptz NOT NULL,"
    " attrs jsonb, active boolean NOT NULL",
    """SELECT g, 'name ' || md5(g::text), round((g %% 100000)::numeric / 7, 2),
       '2024-01-01'::timestamptz + g * interval '10 s',
       jsonb_build_object('k', g %% 97, 'tag', 't' || g %% 13), g %% 3 <> 0
    FROM generate_series(1, %(hi)s::bigint) g""",
)
MEASURES = (
    "id bigint {pk}, code integer NOT NULL, note text, price double precision NOT NULL,"
    " day date NOT NULL, tags text[], seen_at timestamptz",
    """SELECT g, (g %% 50000)::int, CASE WHEN g %% 5 = 0 THEN NULL ELSE 'note ' || g END,
       g / 3.0, '2024-01-01'::date + (g %% 700)::int, ARRAY['a' || g %% 7, 'b' || g %% 11],
       CASE WHEN g %% 4 = 0 THEN NULL ELSE '2024-06-01'::timestamptz + g * interval '1 s' END
    FROM generate_series(1, %(hi)s::bigint) g""",
)
# A few names a tool must quote or may rename (capitals, spaces), and one table with no
# primary key (pgflow: `options: {keyless: full_refresh}`), by their place in the size order.
SPECIAL_NAMES = {1: "OrderLines", 20: "Customer Notes", 60: "AuditTrail", 120: "stock level"}
KEYLESS = 30
KEYLESS_NAME = "event_log"
SHRINK = 0.96  # each table holds this share of the previous one's rows: a geometric spread


@dataclass(frozen=True)
class Table:
    name: str
    rows: int
    shape: int  # 0: PLAIN, 1: MEASURES, 2: orders (bench/common.py)
    keyed: bool


def tables(count: int, total_rows: int) -> list[Table]:
    """`count` tables whose rows sum to `total_rows`: a few large, many small."""
    weights = [SHRINK**i for i in range(count)]
    rows = [max(1, int(total_rows * w / sum(weights))) for w in weights]
    rows[0] += total_rows - sum(rows)  # what the rounding left over goes to the largest
    made = []
    for i, n in enumerate(rows):
        name = KEYLESS_NAME if i == KEYLESS else SPECIAL_NAMES.get(i, f"t{i:03}")
        made.append(Table(name, n, i % 3, i != KEYLESS))
    return made


def create_schema(uri: str, made: Sequence[Table]) -> None:
    """The tables in the source's schema `public`, filled, vacuumed and analyzed."""
    with psycopg.connect(uri, autocommit=True) as conn:
        for table in made:
            ident = sql.Identifier("public", table.name).as_string(conn)
            pk = "PRIMARY KEY" if table.keyed else "NOT NULL"
            if table.shape == 2:
                ddl = ORDERS_DDL.format(table=ident)
                if not table.keyed:
                    ddl = ddl.replace("PRIMARY KEY", "NOT NULL")
                fill = ORDERS_FILL.format(table=ident)
                params = {"lo": 1, "hi": table.rows}
            else:
                columns, select = (PLAIN, MEASURES)[table.shape]
                ddl = f"CREATE TABLE {ident} ({columns.format(pk=pk)})"
                fill = f"INSERT INTO {ident} {select}"
                params = {"hi": table.rows}
            conn.execute(ddl)
            conn.execute(fill, params)
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier("public", table.name)))


def schema_bytes(uri: str, schema: str = "public") -> int:
    """pg_table_size summed over the schema's tables (heap + TOAST, no indexes)."""
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (schema,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def listing(uri: str, connection_id: str, schema: str = "public") -> SchemaListing:
    """The schema's tables with their primary keys, as pgflow's table cache holds them: the
    bench writes the cache itself where there is no `pgflow specs refresh` yet."""
    with psycopg.connect(uri) as conn:
        rows = conn.execute(
            "SELECT c.relname, coalesce((SELECT array_agg(a.attname ORDER BY k.ord)"
            "  FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a"
            "  WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid"
            "  AND a.attnum = k.attnum), '{}')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " ORDER BY c.relname",
            (schema,),
        ).fetchall()
    listed = tuple(ListedTable(str(name), "table", tuple(key)) for name, key in rows)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return SchemaListing(connection_id, schema, True, listed, now)


@dataclass
class Run:
    tool: str
    repetition: int
    wall: float
    rows: int  # the rows the target holds after the run (all tables)
    rss_mb: float
    valid: bool
    source_conns: int  # peak client connections on the source database during the run
    sink_conns: int  # the same on the tool's target database
    note: str = ""
    own_s: float | None = None  # pgflow: its load step(s), from the run's log
    figures: dict[str, Any] = field(default_factory=dict)  # what the tool said of its run


@dataclass
class Setting:
    """The clusters and the generated schema every tool loads."""

    source: ClusterInfo
    sink: ClusterInfo
    work: Path
    made: list[Table]
    runs: list[Run] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def source_uri(self) -> str:
        return self.source.uri("bench_source")

    def sink_uri(self, database: str = "bench_sink") -> str:
        return self.sink.uri(database)


# A tool's finished process and what it said of its run (`note`; pgflow: `own_s` and steps).
Outcome = tuple[Finished, dict[str, Any]]


def checked(tool: str, done: Finished) -> Finished:
    if done.returncode != 0:
        raise RuntimeError(
            f"{tool} failed (exit {done.returncode}):\n{tail(done.stderr + done.stdout)}"
        )
    return done


# -- the check ------------------------------------------------------------------------------------


def squeezed(name: str) -> str:
    """A table name as every tool's naming leaves it comparable: lower case, letters and
    digits only (dlt: `OrderLines` -> `order_lines`; Sling may fold or replace a space)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def mismatches(uri: str, schema: str, made: Sequence[Table]) -> list[str]:
    """Each source table whose target in `schema` is missing or holds other than its rows."""
    problems = []
    with psycopg.connect(uri, autocommit=True) as conn:
        present = {
            str(r[0])
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        }
        by_squeezed = {squeezed(name): name for name in present}
        for table in made:
            name = table.name if table.name in present else by_squeezed.get(squeezed(table.name))
            if name is None:
                problems.append(f"{table.name}: no target table")
                continue
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            ).fetchone()
            got = int(count[0]) if count else -1
            if got != table.rows:
                problems.append(f"{table.name}: {got:,} rows, the source {table.rows:,}")
    return problems


def table_count(uri: str, schema: str) -> int:
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchone()
    return int(row[0]) if row else 0


def clear(uri: str, schema: str) -> None:
    """Empty every table of `schema` (the dump pipe's pre-created copy)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
            )
        ]
        if names:
            conn.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(sql.Identifier(schema, n) for n in names)
                )
            )


# -- connections while a tool runs ----------------------------------------------------------------

POLL_S = 0.1
CLIENTS = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    " AND datname = %s AND pid <> pg_backend_pid()"
)


@dataclass
class Peaks:
    """The most client connections seen at once on each watched database."""

    counts: dict[str, int]


@contextmanager
def watch_connections(watched: dict[str, tuple[str, str]]) -> Iterator[Peaks]:
    """Poll each watched database (label -> (server uri, database name)) every POLL_S for its
    client backends (the poller's own excluded) until the block ends."""
    peaks = Peaks({label: 0 for label in watched})
    stop = threading.Event()
    conns = {label: psycopg.connect(uri, autocommit=True) for label, (uri, _) in watched.items()}

    def poll() -> None:
        while not stop.is_set():
            for label, (_, database) in watched.items():
                row = conns[label].execute(CLIENTS, (database,)).fetchone()
                peaks.counts[label] = max(peaks.counts[label], int(row[0]) if row else 0)
            stop.wait(POLL_S)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()
        for conn in conns.values():
            conn.close()

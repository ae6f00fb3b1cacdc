"""What the benchmarks share: a throwaway local cluster that is always stopped and removed, the\norders source, the target check, and the peak RSS of a client process tree."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pgflow.localdb.cluster import ClusterInfo, LocalPostgres


@contextmanager
def throwaway_server(
    databases: Sequence[str], settings: dict[str, str] | None = None
) -> Iterator[tuple[LocalPostgres, ClusterInfo]]:
    """A fresh local cluster holding `databases` (the server, e.g. for its log, and how to
    reach it), with server `settings` on top of LocalPostgres's (set, then restarted: e.g.
    shared_buffers); stopped and deleted on exit, even on failure."""
    root = Path(tempfile.mkdtemp(prefix="pgflow-bench-"))
    root.chmod(0o755)  # as root the server runs as OS user postgres: it must enter the folder
    cluster = LocalPostgres(root / "cluster")
    try:
        info = cluster.start(databases=databases)
        if settings:
            with psycopg.connect(info.uri("postgres"), autocommit=True) as conn:
                for name, value in settings.items():
                    conn.execute(
                        sql.SQL("ALTER SYSTEM SET {} = {}").format(
                            sql.Identifier(name), sql.Literal(value)
                        )
                    )
            cluster.stop()
            info = cluster.start()
        yield cluster, info
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def throwaway_cluster(
    databases: Sequence[str], settings: dict[str, str] | None = None
) -> Iterator[ClusterInfo]:
    """A fresh local cluster holding `databases`; stopped and deleted on exit, even on failure."""
    with throwaway_server(databases, settings) as (_, info):
        yield info


# The realistic orders table the incremental and CDC benches share.
ORDERS_DDL = """
CREATE TABLE {table} (
    id bigint PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL,
    amount numeric(12,2) NOT NULL, note text, tags text[], attrs jsonb,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, paid boolean NOT NULL,
    ref uuid NOT NULL
)"""
# Rows with ids lo..hi.
ORDERS_FILL = """
INSERT INTO {table}
SELECT g, g %% 50000, (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g %% 4],
       round((g %% 100000)::numeric / 7, 2),
       CASE WHEN g %% 5 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
       ARRAY['t' || g %% 13, 'u' || g %% 7],
       jsonb_build_object('sku', 'SKU-' || g %% 997, 'qty', 1 + g %% 7, 'gift', g %% 11 = 0),
       '2024-01-01'::timestamptz + g * interval '10 s',
       '2024-01-01'::timestamptz + g * interval '10 s' + (g %% 3600) * interval '1 s',
       g %% 3 <> 0, md5(g::text)::uuid
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""


# -- the orders source ----------------------------------------------------------------------------


def create_orders(uri: str, rows: int, table: str = "orders") -> None:
    """`table` with `rows` orders (ids 1..rows), an index on updated_at, vacuumed and analyzed."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(ORDERS_DDL.format(table=table))
        conn.execute(ORDERS_FILL.format(table=table), {"lo": 1, "hi": rows})
        conn.execute(f"CREATE INDEX {table}_updated_at ON {table} (updated_at)")
        conn.execute(f"VACUUM ANALYZE {table}")


def change_rows(uri: str, repetition: int, share: int = 100, table: str = "orders") -> int:
    """Change 1/`share` of the rows (residue `repetition`: other rows each time); how many.

    updated_at = clock_timestamp(): changed rows carry distinct cursor values, as rows
    changed by many transactions do; shifted past the table's latest updated_at when the
    generated rows reach into the future (10,000,000 rows span 3 years from 2024-01-01), so
    a changed row is always newer than every other."""
    shift = (
        f"(SELECT greatest(max(updated_at) - now(), '0'::interval) + interval '1 s' FROM {table})"
    )
    with psycopg.connect(uri, autocommit=True) as conn:
        cursor = conn.execute(
            f"UPDATE {table} SET status = %s, amount = amount + 1,"
            f" updated_at = clock_timestamp() + {shift} WHERE id %% %s = %s",
            (f"changed-{repetition}", share, repetition % share),
        )
        return cursor.rowcount


def checkpoint(*uris: str) -> None:
    """Flush the clusters' dirty buffers, so a run is not billed for the previous one's writes."""
    for uri in uris:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CHECKPOINT")


def vacuum_analyze(uri: str, tables: Sequence[str]) -> None:
    """VACUUM ANALYZE each "schema.table": what autovacuum does to a freshly loaded table."""
    with psycopg.connect(uri, autocommit=True) as conn:
        for table in tables:
            schema, name = table.split(".", 1)
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, name)))


# Every orders column, cast to what every tool's target can hold: dlt and Sling store
# customer_id as bigint, text and uuid as varchar/text, text[] as jsonb or text, jsonb as
# jsonb/json/text and may keep timestamps without time zone (written in UTC).
COMPARED = (
    "id::bigint, customer_id::bigint, status::text, amount::numeric(12,2), note::text, {tags},"
    " attrs::jsonb, created_at::timestamptz, updated_at::timestamptz, paid::boolean, ref::text"
)
CHECK_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=1"


def tags_projection(conn: psycopg.Connection, table: str) -> str:
    """`tags` as jsonb, whatever type the target gave the source's text[]."""
    schema, name = table.split(".")
    row = conn.execute(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s AND column_name = 'tags'",
        (schema, name),
    ).fetchone()
    kind = row[0] if row else "ARRAY"
    if kind == "ARRAY":
        return "to_jsonb(tags)"
    if kind in ("jsonb", "json"):
        return "tags::jsonb"
    sample = conn.execute(
        f"SELECT tags::text FROM {table} WHERE tags IS NOT NULL LIMIT 1"
    ).fetchone()
    is_pg_array = bool(sample and sample[0].startswith("{"))
    return "to_jsonb(tags::text[])" if is_pg_array else "tags::jsonb"


def checksum(uri: str, table: str) -> tuple[int, int]:
    """count(*) and an order-independent checksum of every column, projected (COMPARED)."""
    with psycopg.connect(uri, options=CHECK_OPTIONS) as conn:
        projection = COMPARED.format(tags=tags_projection(conn, table))
        row = conn.execute(
            f"SELECT count(*), coalesce(sum(hashtext(ROW({projection})::text)::bigint), 0)"
            f" FROM {table}"  # type: ignore[arg-type]
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# -- measuring a client process tree --------------------------------------------------------------

SUBPROCESS_TIMEOUT_S = 3600
RSS_POLL_S = 0.05


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's VmHWM in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _tree_rss_kb(root: int) -> int:
    """The summed RSS of `root` and all its descendants, from /proc.

    A child that has not exec'd yet (its parent's command line) holds no memory of its own
    beyond its private pages, and a vfork child (its parent waits in state D until it execs)
    not even those: it runs in its parent's address space, whose RSS it reports as its own.
    Python starts subprocesses with vfork: summing that RSS counted the parent twice (Dagster's
    CLI starting `tail` for its compute logs: 172 MB read as 280 MB in one run of three to five)."""
    parents: dict[int, int] = {}
    states: dict[int, str] = {}
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        states[int(entry.name)], parents[int(entry.name)] = fields[0], int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = _rss_kb(root, page_kb)
    for pid in tree - {root}:
        # Read after the command line: a child that exec'd since the scan is small now.
        if _cmdline(pid) != _cmdline(parents[pid]):
            total += _rss_kb(pid, page_kb)
        elif states.get(parents[pid]) != "D":  # a fork's own pages; a vfork child has none
            total += _private_kb(pid)
    return total


def _rss_kb(pid: int, page_kb: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page_kb
    except OSError:
        return 0


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _private_kb(pid: int) -> int:
    """A process's pages of its own (smaps_rollup's Private_Clean + Private_Dirty)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in lines if line.startswith("Private_"))


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    wall: float
    rss_mb: float  # peak of the tree's summed RSS, polled


def run_tree(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Finished:
    """Run `cmd` in a session of its own: its wall time and the peak RSS of its process tree.

    The tree's summed RSS is polled every RSS_POLL_S from /proc. (wait4's ru_maxrss is no
    floor: Linux carries the forking process's high-water mark over fork and exec into it.)"""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True
        )
        killer = threading.Timer(SUBPROCESS_TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        killer.start()
        peak_kb = 0
        try:
            while True:
                pid, status = os.waitpid(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak_kb = max(peak_kb, _tree_rss_kb(proc.pid))
                time.sleep(RSS_POLL_S)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Finished(proc.returncode, out.read(), err.read(), wall, peak_kb / 1024)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])

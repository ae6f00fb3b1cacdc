"""Fault injection for real Dagster materializations: a watcher thread that waits for a load
to reach an observable state (a COPY in progress, a statement waiting on a lock) and then
terminates a backend or restarts the cluster; the run's retry events; the figures line."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow.localdb.cluster import START_TIMEOUT_S, LocalPostgres
from pgflow.sources.postgres import PostgresTableSource

WATCH_TIMEOUT_S = 180.0
POLL_S = 0.02

# The source table: wide enough that its COPY lasts a while, with a cursor column.
ITEMS_DDL = (
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2),"
    " updated_at timestamptz NOT NULL, pad text)"
)
ITEMS_FILL = (
    "INSERT INTO items SELECT g, 'item ' || g, g * 0.25,"
    " '2026-01-01'::timestamptz + g * '1 second'::interval, repeat(md5(g::text), 6)"
    " FROM generate_series(%s::int, %s::int) g"
)
SAME = "SELECT id, name, price, updated_at, pad FROM {} ORDER BY id"


def items_table(uri: str, rows: int) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(ITEMS_DDL)
        conn.execute(ITEMS_FILL, (1, rows))
        conn.execute("ANALYZE items")


def fetch(uri: str, query: str, params: object = None) -> list[tuple]:
    with psycopg.connect(uri) as conn:
        return conn.execute(query, params).fetchall()


def execute(uri: str, statement: str, params: object = None) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statement, params)


def dbname(uri: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(uri)["dbname"]


def stored_position(sink_uri: str, schema: str, table: str) -> str | None:
    found = fetch(
        sink_uri,
        "SELECT value FROM _pgflow.pipeline_state WHERE target_schema = %s AND target_table = %s",
        (schema, table),
    )
    return found[0][0] if found else None


# -- observable states ------------------------------------------------------------------------


def copy_in_progress(database: str, command: str, min_tuples: int) -> tuple[str, tuple]:
    """A backend of `database` running COPY (`COPY TO` / `COPY FROM`) past `min_tuples` rows."""
    return (
        "SELECT p.pid AS pid, p.tuples_processed FROM pg_stat_progress_copy p"
        " JOIN pg_database d ON d.oid = p.datid"
        " WHERE d.datname = %s AND p.command = %s AND p.tuples_processed >= %s"
        " AND p.pid <> pg_backend_pid()",
        (database, command, min_tuples),
    )


def waiting_on_lock(database: str, query_prefix: str) -> tuple[str, tuple]:
    """A pgflow backend of `database` whose statement starts with `query_prefix` and waits
    on a heavyweight lock."""
    return (
        "SELECT pid, 0 FROM pg_stat_activity WHERE datname = %s AND application_name = 'pgflow'"
        " AND wait_event_type = 'Lock' AND query LIKE %s",
        (database, query_prefix + "%"),
    )


@dataclass
class Fault:
    """When `condition` (a query on the admin connection returning (pid, tuples)) finds a
    backend, `action` is taken: "terminate" that backend, "cancel" it, "restart" the cluster,
    or "observe" (nothing: a state to reach before the next fault).
    `then` runs after the action (e.g. releasing a lock the fault was waiting behind)."""

    name: str
    condition: tuple[str, tuple]
    action: str = "terminate"
    then: Callable[[], None] | None = None
    # Only backends started after the previous fault fired: the next attempt's, never the
    # dying one's (its other connection may still be in its COPY for a moment).
    fresh: bool = True
    seen_pid: int | None = None
    seen_tuples: int | None = None
    seconds: float | None = None  # the restart's duration
    fired_at: str | None = None  # server time when it fired


@dataclass
class Watcher:
    """Runs the faults in order, in a thread, while the test runs the materialization."""

    admin_uri: str
    faults: Sequence[Fault]
    cluster: LocalPostgres | None = None
    error: BaseException | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, name="fault-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=WATCH_TIMEOUT_S)

    @property
    def fired(self) -> list[Fault]:
        return [f for f in self.faults if f.seen_pid is not None]

    def _run(self) -> None:
        try:
            since = "-infinity"
            for fault in self.faults:
                if not self._fire(fault, since):
                    return
                since = fault.fired_at or since
        except BaseException as exc:  # reported by the test
            self.error = exc
            # Let go of whatever the remaining faults wait behind, so the run can end.
            for fault in self.faults:
                if fault.seen_pid is None and fault.then is not None:
                    with contextlib.suppress(Exception):
                        fault.then()

    def _fire(self, fault: Fault, since: str) -> bool:
        deadline = time.monotonic() + WATCH_TIMEOUT_S
        query, params = fault.condition
        if fault.fresh:
            query = (
                f"SELECT * FROM ({query}) q WHERE q.pid IN"
                " (SELECT pid FROM pg_stat_activity WHERE backend_start > %s::timestamptz)"
            )
            params = (*params, since)
        with psycopg.connect(self.admin_uri, autocommit=True) as admin:
            while not self._stop.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"fault {fault.name!r}: its state never came")
                found = admin.execute(query, params).fetchone()
                if found is None:
                    time.sleep(POLL_S)
                    continue
                fault.seen_pid, fault.seen_tuples = found[0], found[1]
                if fault.action == "terminate":
                    admin.execute("SELECT pg_terminate_backend(%s)", (found[0],))
                elif fault.action == "cancel":
                    admin.execute("SELECT pg_cancel_backend(%s)", (found[0],))
                elif fault.action in ("restart", "observe"):
                    break
                else:
                    raise ValueError(fault.action)
                fault.fired_at = admin.execute("SELECT clock_timestamp()::text").fetchone()[0]
                break
            else:
                return False
        if fault.action == "restart":
            assert self.cluster is not None
            started = time.monotonic()
            restart(self.cluster)
            fault.seconds = time.monotonic() - started
        if fault.then is not None:
            fault.then()
        return True


@contextmanager
def watching(
    admin_uri: str, faults: Sequence[Fault], cluster: LocalPostgres | None = None
) -> Iterator[Watcher]:
    watcher = Watcher(admin_uri, faults, cluster).start()
    try:
        yield watcher
    finally:
        watcher.stop()
    if watcher.error is not None:
        raise watcher.error


def restart(cluster: LocalPostgres) -> None:
    """`pg_ctl restart -m fast`: every backend ends, the server comes back on its port."""
    cluster.run_tool(
        "pg_ctl",
        "restart",
        "-w",
        "-m",
        "fast",
        "-t",
        str(START_TIMEOUT_S),
        "-D",
        str(cluster.data_dir),
        "-l",  # without a log file the server would hold our stdout pipe open
        str(cluster.log_file),
    )


class LockHolder:
    """A session holding a lock (taken by `statement`) until `release()`."""

    def __init__(self, uri: str, statement: str) -> None:
        self.conn = psycopg.connect(uri, autocommit=True)
        self.conn.execute("BEGIN")
        self.conn.execute(statement)

    def release(self) -> None:
        if not self.conn.closed:
            with contextlib.suppress(psycopg.Error):  # a restart may have ended the session
                self.conn.execute("COMMIT")
            self.conn.close()


GATE_KEY = 7_340_001


def copy_gate(uri: str, table: str, at_id: int) -> LockHolder:
    """Make a COPY into `table` stop at row `at_id` until the returned holder releases: a row
    trigger takes an advisory lock the holder has. The COPY then waits, half done, observably
    (wait_event_type Lock, query COPY ...). The trigger changes no row."""
    execute(
        uri,
        "CREATE OR REPLACE FUNCTION public.fault_gate() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN IF NEW.id = {at_id} THEN PERFORM pg_advisory_xact_lock_shared({GATE_KEY});"
        " END IF; RETURN NEW; END $$",
    )
    execute(
        uri,
        f"CREATE TRIGGER fault_gate BEFORE INSERT ON {table} FOR EACH ROW"
        " EXECUTE FUNCTION public.fault_gate()",
    )
    return LockHolder(uri, f"SELECT pg_advisory_xact_lock({GATE_KEY})")


def drop_copy_gate(uri: str, table: str) -> None:
    execute(uri, f"DROP TRIGGER IF EXISTS fault_gate ON {table}")


class SourceReadPauses:
    """Holds the run's source COPYs still mid-way, so a fault cannot miss them on a fast
    machine: the n-th COPY of the run (one per attempt) stops reading after `after_bytes`
    until `resume(n)` is called, typically by the n-th fault's `then`. The source server then
    waits on a full socket with its COPY TO in progress, and the sink's COPY of the rows read
    so far is in progress too. COPYs beyond the pauses asked for run straight through.
    Test instrumentation only: the data still flows between the real servers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int, after_bytes: int) -> None:
        self.events = [threading.Event() for _ in range(count)]
        self.after_bytes = after_bytes
        self.calls = 0
        original = PostgresTableSource.copy_select
        pauses = self

        def paused_copy_select(source: PostgresTableSource, copy: object) -> Iterator[bytes]:
            event = pauses.events[pauses.calls] if pauses.calls < count else None
            pauses.calls += 1
            read = 0
            with contextlib.closing(original(source, copy)) as chunks:
                for chunk in chunks:
                    yield chunk
                    read += len(chunk)
                    if event is not None and read >= pauses.after_bytes:
                        event.wait(WATCH_TIMEOUT_S)
                        event = None

        monkeypatch.setattr(PostgresTableSource, "copy_select", paused_copy_select)

    def resume(self, n: int) -> Callable[[], None]:
        return self.events[n].set


# -- Dagster ----------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    result: dg.ExecuteInProcessResult
    retries: list[tuple[float, float]]  # (event time, seconds_to_wait) per STEP_UP_FOR_RETRY
    restarts: list[float]  # event times of STEP_RESTARTED
    failures: list[str]  # STEP_FAILURE messages

    @property
    def retry_count(self) -> int:
        return len(self.retries)

    @property
    def waits(self) -> list[float]:
        return [wait for _, wait in self.retries]

    @property
    def measured_waits(self) -> list[float]:
        """Seconds between each retry request and the restart of the step."""
        return [restart - at for (at, _), restart in zip(self.retries, self.restarts, strict=True)]


def materialize(
    specs: Path,
    env: dict[str, str],
    key: dg.AssetKey,
    monkeypatch: pytest.MonkeyPatch,
    run_config: dict | None = None,
) -> RunOutcome:
    """Materialize one pgflow asset in process, its RetryPolicy built from `env`."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PGFLOW_CONFIG", str(specs))
    asset = build_definitions(load_project(specs)).resolve_assets_def(key)
    with dg.instance_for_test() as inst:
        result = dg.materialize(
            [asset], instance=inst, raise_on_error=False, run_config=run_config or {}
        )
        logs = inst.all_logs(result.run_id)
    retries, restarts, failures = [], [], []
    for entry in logs:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            retries.append((entry.timestamp, event.step_retry_data.seconds_to_wait or 0.0))
        elif event.event_type == dg.DagsterEventType.STEP_RESTARTED:
            restarts.append(entry.timestamp)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failures.append(str(event.step_failure_data.error.message))
    return RunOutcome(result, retries, restarts, failures)


def assert_backoff(outcome: RunOutcome, base: float) -> None:
    """Each retry waited what the policy asked, and what it asked grows: Dagster's
    EXPONENTIAL backoff with PLUS_MINUS jitter waits (2^n - 1) * base +- base before try n+1."""
    for attempt, wait in enumerate(outcome.waits, start=1):
        nominal = (2**attempt - 1) * base
        assert nominal - base - 1e-6 <= wait <= nominal + base + 1e-6, (attempt, wait)
    assert outcome.waits == sorted(outcome.waits)
    for measured, wait in zip(outcome.measured_waits, outcome.waits, strict=True):
        assert measured >= wait - 0.05, (measured, wait)  # never restarted early


# -- figures ----------------------------------------------------------------------------------


def figures(line: str, **data: object) -> None:
    """Print the figures line; append it as JSON to $PGFLOW_RELIABILITY_FIGURES when set."""
    print(line)
    path = os.environ.get("PGFLOW_RELIABILITY_FIGURES")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"line": line, **data}, default=str) + "\n")

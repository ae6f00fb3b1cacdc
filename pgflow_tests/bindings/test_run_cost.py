"""A run's fixed cost, measured where pgflow causes it: what the run's process imports and how
many connections it opens to Dagster's storage. Each runs `dagster asset materialize` in a
process of its own with the shipped dagster.yaml (Postgres storage)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
import weakref

import psycopg

from pgflow.bindings.definitions import collector_paused
from pgflow_tests.bindings.conftest import REPO, DagsterSetup

# `dagster asset materialize` as the console script runs it, reporting at the end which of
# these top-level packages the process imported.
CLI_REPORTING_IMPORTS = """
import json, sys
from dagster._cli import main
sys.argv = ["dagster", "asset", "materialize", "-m", "pgflow.definitions", "--select", {key!r}]
try:
    main()
except SystemExit as done:
    code = done.code
packages = {{name.split(".")[0] for name in sys.modules}}
watched = ("polars", "deltalake", "pyarrow", "hvac", "arro3", "psycopg")
print(json.dumps({{"exit": code, "imported": sorted(p for p in watched if p in packages)}}))
"""


def materialize_reporting_imports(setup: DagsterSetup, key: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CLI_REPORTING_IMPORTS.format(key=key)],
        env=setup.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def storage_uri(setup: DagsterSetup) -> str:
    return psycopg.conninfo.make_conninfo(setup.sink_uri, dbname=setup.env["DAGSTER_PG_DB"])


def sessions(uri: str) -> int:
    """Sessions ever established to the database (pg_stat_database, PostgreSQL 14+)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_a_postgres_run_imports_neither_polars_deltalake_pyarrow_nor_hvac(
    dagster_setup: DagsterSetup,
):
    setup = dagster_setup
    report = materialize_reporting_imports(setup, "landing/items")
    assert report["exit"] == 0
    # The load and its checks ran: the target holds the source's rows.
    with psycopg.connect(setup.sink_uri) as conn:
        assert conn.execute("SELECT count(*), sum(id) FROM landing.items").fetchone() == (
            300,
            45150,
        )
    # psycopg shows the report sees what the run imported; the others stay out.
    assert report["imported"] == ["psycopg"]


def test_the_run_keeps_its_storage_connections_instead_of_one_per_event(
    dagster_setup: DagsterSetup,
):
    setup = dagster_setup
    first = materialize_reporting_imports(setup, "landing/items")  # creates Dagster's tables
    assert first["exit"] == 0
    uri = storage_uri(setup)
    before = sessions(uri)
    second = materialize_reporting_imports(setup, "landing/items")
    assert second["exit"] == 0
    time.sleep(0.5)  # a closed session is counted when its backend exits
    opened = sessions(uri) - before - 1  # less the session that reads the count
    # The CLI opens a connection per query until the run starts (instance, run record,
    # planned events: about 30); the run then keeps one per storage. Without the pool a
    # one-asset run with its checks opens about 120.
    assert 0 < opened <= 45, opened
    with psycopg.connect(uri) as conn:
        events = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = "
            "(SELECT run_id FROM runs ORDER BY create_timestamp DESC LIMIT 1)"
        ).fetchone()
        assert events is not None and events[0] >= 20  # the run wrote its events all the same


class Node:
    peer: Node | None = None


def test_a_load_with_the_collector_paused_leaves_its_cycles_collected_and_the_rest_frozen():
    assert gc.isenabled()
    gc.unfreeze()
    try:
        with collector_paused():
            assert not gc.isenabled()
            first, second, kept = Node(), Node(), Node()
            first.peer, second.peer = second, first  # garbage the load leaves behind
            probe = weakref.ref(first)
            del first, second
            assert probe() is not None  # nothing collects it while the load runs
        assert gc.isenabled()
        assert probe() is None
        # What stays is frozen: in none of the three generations a collection walks.
        assert gc.get_freeze_count() > 0
        assert not any(any(o is kept for o in gc.get_objects(g)) for g in range(3))
    finally:
        gc.unfreeze()

"""Two materializations of one asset at once serialize, never interleave.

Two real `dagster asset materialize -m pgflow.definitions --select landing/items` processes
start together (the shipped dagster.yaml: Postgres run and event storage). A reader holds a
lock on the target that the load's writes need, so the first run to take the target's
advisory lock stops inside its load transaction; the test then sees, in pg_locks, that run
holding the advisory lock and the other one queued on it (each run's sink sessions carry
their own application_name). Once the reader lets go, both runs succeed, and a trigger-fed
commit log in the sink (each TRUNCATE, each stored position, with the run that wrote it)
shows every commit of one run before the other's, positions never going back; the target
equals the source with the right position.

CDC applies in many transactions; its run holds the target's lock from start to end, so a
second run starts from the position the first stored.

pgflow_tests/flows/test_postgres_load_concurrency.py covers the same at the load_table level.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.bindings.conftest import REPO, DagsterSetup, empty_dagster_setup
from pgflow_tests.bindings.test_definitions_cli import DAGSTER, instance
from pgflow_tests.pg import drop_slots, slot_name_for
from pgflow_tests.reliability.faults_support import (
    SAME,
    LockHolder,
    dbname,
    execute,
    fetch,
    figures,
    items_table,
    materialize,
    stored_position,
)

ROWS = 20_000
KEY = dg.AssetKey(["landing", "items"])
WAIT_S = 240.0
POOL = "pgflow/source/shop"

SPECS = {
    "full_refresh": """
source: {{type: postgres, connection_id: shop, table: {{schema: public, name: items}}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: full_refresh}}
""",
    "incremental_merge": """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: column, incremental_column: updated_at}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
""",
    "cdc": """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: cdc, slot_name: {slot}, target_batch_size: {batch}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: incremental_merge, unique_key: [id], merge_policy: upsert}}
""",
}

# pgflow backends of the sink database: who holds the target's advisory lock, who waits on it.
LOCKS = """
SELECT a.application_name, l.granted, a.wait_event_type
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND a.datname = %s AND a.application_name LIKE 'pgflow-run-%%'
"""
# Every commit that writes the target (a TRUNCATE, a stored position): which run, in order.
COMMIT_LOG = """
CREATE TABLE public.commit_log (seq bigserial, app text, position text);
CREATE FUNCTION public.log_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep({sleep});
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO public.commit_log (app) VALUES (current_setting('application_name'));
  ELSE
    INSERT INTO public.commit_log (app, position)
    VALUES (current_setting('application_name'), NEW.value);
  END IF;
  RETURN NULL;
END $$;
"""
LOG_TRUNCATE = (
    "CREATE TRIGGER log_commit AFTER TRUNCATE ON landing.items"
    " FOR EACH STATEMENT EXECUTE FUNCTION public.log_commit()"
)
LOG_POSITION = (
    "CREATE TRIGGER log_commit AFTER INSERT OR UPDATE ON _pgflow.pipeline_state"
    " FOR EACH ROW EXECUTE FUNCTION public.log_commit()"
)


def _log_commits(setup: DagsterSetup, trigger: str, sleep: float = 0.0) -> None:
    """Log each commit; `sleep` slows each one down (a slow sink), so a run's batches take
    a while and the other run has the time to start meanwhile."""
    execute(setup.sink_uri, COMMIT_LOG.format(sleep=sleep))
    execute(setup.sink_uri, trigger)


def _commits(setup: DagsterSetup, position_type: str | None = None) -> list[tuple[str, object]]:
    """(run, position) of each commit, in commit order; positions cast for comparison."""
    value = f"position::{position_type}" if position_type else "position"
    if position_type == "pg_lsn":
        value = "position::pg_lsn - '0/0'::pg_lsn"
    return fetch(setup.sink_uri, f"SELECT app, {value} FROM public.commit_log ORDER BY seq")


def _one_run_then_the_other(commits: list[tuple[str, object]]) -> list[str]:
    """The runs in commit order, asserting that every commit of one came before the other's."""
    order: list[str] = []
    for app, _ in commits:
        if not order or order[-1] != app:
            order.append(app)
    assert len(order) == 2 and set(order) == {"pgflow-run-1", "pgflow-run-2"}, order
    positions = [p for _, p in commits if p is not None]
    assert positions == sorted(positions), positions  # never went back
    return order


@pytest.fixture
def cli_setup(
    local_pg: ClusterInfo, make_database: Callable[[], str], tmp_path: Path
) -> DagsterSetup:
    return empty_dagster_setup(local_pg, make_database, tmp_path, PGFLOW_RETRY_DELAY_SECONDS="1")


def _launch(setup: DagsterSetup, run: int) -> subprocess.Popen[str]:
    # Each run's sink sessions carry its name, so pg_locks and the commit log tell them apart.
    sink_uri = f"{setup.sink_uri}?application_name=pgflow-run-{run}"
    source_uri = f"{setup.source_uri}?application_name=pgflow-run-{run}"
    return subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-m", "pgflow.definitions", "--select", "landing/items"],
        env={**setup.env, "PGFLOW_CONN_WAREHOUSE": sink_uri, "PGFLOW_CONN_SHOP": source_uri},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_the_queue(
    setup: DagsterSetup, runs: list[subprocess.Popen[str]], queue_uri: str
) -> list[tuple]:
    """Until one run holds the advisory lock and waits inside its load (on the reader's lock),
    while the other waits for an advisory lock in `queue_uri`'s database (the target's, or for
    CDC the slot's on the source); returns those pg_locks rows."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        locks = fetch(setup.sink_uri, LOCKS, (dbname(setup.sink_uri),))
        waiting = fetch(queue_uri, LOCKS, (dbname(queue_uri),))
        holding = {r[0] for r in locks if r[1] and r[2] == "Lock"}
        queued = {r[0] for r in waiting if not r[1]}
        if len(holding) == 1 and len(queued) == 1 and holding != queued:
            return locks
        finished = [r for r in runs if r.poll() is not None]
        assert not finished, "a run ended before both were queued:\n" + _output(finished[0])
        time.sleep(0.05)
    raise TimeoutError(f"the two runs never queued on the target's lock: {locks}")


def _output(run: subprocess.Popen[str]) -> str:
    out, _ = run.communicate(timeout=WAIT_S)
    return out[-3000:]


def _materializations(setup: DagsterSetup) -> list[dict[str, object]]:
    with instance(setup) as inst:
        records = inst.fetch_materializations(KEY, limit=10).records
        return [
            {k: v.value for k, v in r.asset_materialization.metadata.items()}
            for r in reversed(records)  # oldest first
            if r.asset_materialization is not None
        ]


def _claim_the_pool_once(setup: DagsterSetup) -> None:
    """Create the source's pool row as a first run would. Two runs claiming a never-used pool
    at the same moment can fail one of them in Dagster itself (1.13, Postgres storage:
    initialize_concurrency_limit_to_default's INSERT loses the race and its IntegrityError
    fallback runs in the aborted transaction); that is not what these tests are about."""
    with instance(setup) as inst:
        inst.event_log_storage.initialize_concurrency_limit_to_default(POOL)


def _run_twice_at_once(
    setup: DagsterSetup, reader_lock: str, queue_uri: str | None = None
) -> tuple[list[tuple], float, int]:
    _claim_the_pool_once(setup)
    holder = LockHolder(setup.sink_uri, reader_lock)
    runs = [_launch(setup, 1), _launch(setup, 2)]
    try:
        queue = _wait_for_the_queue(setup, runs, queue_uri or setup.sink_uri)
        queued_at = time.monotonic()
        holder.release()
        outputs = [_output(run) for run in runs]
    finally:
        holder.release()
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        assert "RUN_SUCCESS" in output
    retries = sum(output.count("STEP_UP_FOR_RETRY") for output in outputs)
    return queue, time.monotonic() - queued_at, retries


def _first_load(setup: DagsterSetup, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in setup.env.items() if k.startswith("PGFLOW_")}
    outcome = materialize(setup.specs, env, KEY, monkeypatch)
    assert outcome.result.success, outcome.failures


def _setup(setup: DagsterSetup, mode: str, slot: str = "", batch: int = 100_000) -> None:
    for path in setup.specs.glob("*.yaml"):
        path.unlink()
    (setup.specs / "items.yaml").write_text(SPECS[mode].format(slot=slot, batch=batch))
    items_table(setup.source_uri, ROWS)


UPDATES = "UPDATE items SET price = price + 1, updated_at = now() WHERE id % 4 = 0"
INSERTS = (
    "INSERT INTO items SELECT g, 'new ' || g, 1, now(), 'x'"
    " FROM generate_series(%s::int, %s::int) g"
)


def _change_the_source(setup: DagsterSetup) -> None:
    execute(setup.source_uri, UPDATES)
    execute(setup.source_uri, INSERTS, (ROWS + 1, ROWS + 100))


def _figures(
    mode: str, queue: list[tuple], seconds: float, retries: int, rows: int, extra: str = ""
) -> None:
    figures(
        f"CONCURRENCY {mode}: 2 CLI runs at once, pg_locks showed 1 holding the target lock "
        f"and 1 queued on it; both succeeded {seconds:.1f} s after release ({retries} "
        f"retries), target {rows}/{rows} rows equal{extra}",
        case=f"concurrency {mode}",
        locks=len(queue),
        seconds=seconds,
        retries=retries,
        rows=rows,
    )


def test_two_full_refresh_runs_serialize(
    cli_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = cli_setup
    _setup(setup, "full_refresh")
    _first_load(setup, "full_refresh", monkeypatch)
    _log_commits(setup, LOG_TRUNCATE)
    _change_the_source(setup)
    # TRUNCATE needs ACCESS EXCLUSIVE: the first run waits behind the reader.
    queue, seconds, retries = _run_twice_at_once(setup, "SELECT 1 FROM landing.items LIMIT 1")
    order = _one_run_then_the_other(_commits(setup))
    source = fetch(setup.source_uri, SAME.format("public.items"))
    assert fetch(setup.sink_uri, SAME.format("landing.items")) == source
    loads = _materializations(setup)[-2:]
    assert [m["dagster/row_count"] for m in loads] == [len(source)] * 2
    assert retries == 0
    _figures("full_refresh", queue, seconds, retries, len(source), f"; commits {order}")


@pytest.mark.faults
def test_two_incremental_merge_runs_serialize(
    cli_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = cli_setup
    _setup(setup, "incremental_merge")
    _first_load(setup, "incremental_merge", monkeypatch)
    _log_commits(setup, LOG_POSITION)
    _change_the_source(setup)
    changed = fetch(setup.source_uri, "SELECT count(*) FROM items WHERE updated_at > '2026-06-01'")
    # SHARE conflicts with the merge's DELETE and INSERT (ROW EXCLUSIVE).
    queue, seconds, retries = _run_twice_at_once(setup, "LOCK TABLE landing.items IN SHARE MODE")
    order = _one_run_then_the_other(_commits(setup, "timestamptz"))
    source = fetch(setup.source_uri, SAME.format("public.items"))
    assert fetch(setup.sink_uri, SAME.format("landing.items")) == source
    high_water = fetch(setup.source_uri, "SELECT max(updated_at)::text FROM items")[0][0]
    assert stored_position(setup.sink_uri, "landing", "items") == high_water
    first, second = _materializations(setup)[-2:]
    # The second run read only after the first committed (its snapshot is taken under the
    # lock): from the first one's cursor, not the changes again.
    assert first["pgflow/rows_read"] == changed[0][0]
    assert second["pgflow/cursor_before"] == first["pgflow/cursor_after"] == high_water
    assert second["pgflow/rows_read"] < first["pgflow/rows_read"]
    assert retries == 0
    _figures(
        "incremental_merge",
        queue,
        seconds,
        retries,
        len(source),
        f"; commits {order}, rows read {first['pgflow/rows_read']} then "
        f"{second['pgflow/rows_read']}, cursor {high_water}",
    )


@pytest.mark.faults
def test_two_cdc_runs_serialize(cli_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    """CDC in batches of 500 changes, each commit slowed down (0.25 s): all of one run's batch
    commits come before the other run's, positions never go back, and the target and the
    slot end right."""
    setup = cli_setup
    slot = slot_name_for(setup.source_uri)
    try:
        _setup(setup, "cdc", slot, batch=500)
        _first_load(setup, "cdc", monkeypatch)
        _log_commits(setup, LOG_POSITION, sleep=0.25)
        _change_the_source(setup)
        execute(setup.source_uri, "DELETE FROM items WHERE id % 9 = 0")
        # The second run waits for the slot's lock on the source: one run per slot at a time.
        queue, seconds, retries = _run_twice_at_once(
            setup, "LOCK TABLE landing.items IN SHARE MODE", setup.source_uri
        )
        commits = _commits(setup, "pg_lsn")
        first, second = _materializations(setup)[-2:]
        source = fetch(setup.source_uri, SAME.format("public.items"))
        assert fetch(setup.sink_uri, SAME.format("landing.items")) == source
        stored = stored_position(setup.sink_uri, "landing", "items")
        confirmed = fetch(
            setup.source_uri,
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )[0][0]
        assert stored == confirmed
        order = _one_run_then_the_other(commits)
        assert second["pgflow/cursor_after"] == stored
    finally:
        drop_slots(setup.source_uri, slot)
    _figures(
        "cdc",
        queue,
        seconds,
        retries,
        len(source),
        f"; {len(commits)} batch commits, {order[0]} then {order[1]}, changes applied "
        f"{first['pgflow/changes']} then {second['pgflow/changes']}; LSN {stored} = slot",
    )

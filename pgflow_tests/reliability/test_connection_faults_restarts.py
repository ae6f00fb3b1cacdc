"""Postgres restarted mid-run (pg_ctl restart -m fast) on a cluster of the test's own, for
full_refresh, incremental_merge and CDC: the run reconnects through its retries and the
target equals the source.

Part of the connection-fault tests (test_connection_faults_*.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgflow.localdb.cluster import ClusterInfo, LocalPostgres
from pgflow_tests.pg import drop_slots, slot_name_for
from pgflow_tests.reliability.connection_faults_support import (
    BASE_DELAY,
    CDC,
    CHANGES,
    FULL_REFRESH,
    MERGE,
    ROWS,
    Pipeline,
    _cdc_position_is_the_slot,
    _pipeline,
    _succeeded,
)
from pgflow_tests.reliability.faults_support import (
    SAME,
    Fault,
    LockHolder,
    assert_backoff,
    copy_gate,
    dbname,
    execute,
    fetch,
    figures,
    items_table,
    stored_position,
    waiting_on_lock,
    watching,
)


@pytest.fixture(scope="module")
def own_cluster(make_pg_root: Callable[[], Path]) -> Iterator[tuple[LocalPostgres, ClusterInfo]]:
    """A cluster only this module's restart tests use (restarts never touch shared ones)."""
    cluster = LocalPostgres(make_pg_root())
    info = cluster.start()
    try:
        yield cluster, info
    finally:
        cluster.destroy()


@pytest.fixture
def own_pipeline(
    own_cluster: tuple[LocalPostgres, ClusterInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Pipeline:
    _, info = own_cluster
    suffix = uuid.uuid4().hex[:10]
    uris = []
    for role in ("source", "sink"):
        name = f"{role}_{suffix}"
        execute(info.uri("postgres"), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        execute(info.uri("postgres"), f"CREATE DATABASE {name}")
        uris.append(info.uri(name))
    # A restart takes a while on a busy machine: more retries, each reconnecting.
    return _pipeline(*uris, tmp_path, monkeypatch, PGFLOW_MAX_RETRIES="6")


@pytest.mark.faults
@pytest.mark.parametrize("mode", ["full_refresh", "incremental_merge", "cdc"])
def test_postgres_restart_mid_run(
    own_cluster: tuple[LocalPostgres, ClusterInfo], own_pipeline: Pipeline, mode: str
) -> None:
    cluster, info = own_cluster
    pipeline = own_pipeline
    items_table(pipeline.source_uri, ROWS)
    slot = slot_name_for(pipeline.source_uri)
    spec = {
        "full_refresh": FULL_REFRESH.format(method="truncate_insert"),
        "incremental_merge": MERGE,
        "cdc": CDC.format(slot=slot),
    }[mode]
    pipeline.spec(spec)
    try:
        _succeeded(pipeline.run(), retries=0)
        for statement in CHANGES:
            execute(pipeline.source_uri, statement)
        execute(pipeline.source_uri, "DELETE FROM items WHERE id % 13 = 0")
        # The restart hits the load at a point it waits at, so it cannot finish first:
        # full_refresh half-way through its COPY into the target (a trigger stops it at a
        # row), merge and CDC in their apply (a reader holds a changed row).
        sink = dbname(pipeline.sink_uri)
        if mode == "full_refresh":
            holder = copy_gate(pipeline.sink_uri, "landing.items", ROWS // 2)
            point = waiting_on_lock(sink, "COPY")
        else:
            holder = LockHolder(
                pipeline.sink_uri, "SELECT 1 FROM landing.items WHERE id = 3 FOR UPDATE"
            )
            point = waiting_on_lock(sink, "DELETE" if mode == "incremental_merge" else "")
        restart = Fault("restart", point, action="restart")
        try:
            with watching(info.uri("postgres"), [restart], cluster):
                outcome = pipeline.run()
        finally:
            holder.release()
        assert outcome.result.success, outcome.failures
        assert outcome.retry_count >= 1
        assert_backoff(outcome, BASE_DELAY)
        if mode == "incremental_merge":
            # A merge keeps rows deleted at the source: compare what exists in both.
            source = fetch(pipeline.source_uri, SAME.format("public.items"))
            copied = fetch(
                pipeline.sink_uri,
                SAME.format("landing.items WHERE id % 13 <> 0"),
            )
            assert copied == source
            # ...and keeps the first load's rows deleted since: nothing lost, nothing twice.
            ids = fetch(pipeline.sink_uri, "SELECT id FROM landing.items ORDER BY id")
            assert [i for (i,) in ids] == sorted({r[0] for r in source} | set(range(1, ROWS + 1)))
            high_water = fetch(pipeline.source_uri, "SELECT max(updated_at)::text FROM items")[0][0]
            assert stored_position(pipeline.sink_uri, "landing", "items") == high_water
            rows, total = len(copied), len(source)
        else:
            rows, total = pipeline.equal()
            if mode == "cdc":
                _cdc_position_is_the_slot(pipeline, slot)
    finally:
        if mode == "cdc":
            drop_slots(pipeline.source_uri, slot)
    figures(
        f"FAULTS {mode} Postgres restarted mid-{'COPY' if mode == 'full_refresh' else 'apply'}"
        " (pg_ctl restart -m fast, "
        f"{restart.seconds:.1f} s): {outcome.retry_count} retr{'y' if outcome.retry_count == 1 else 'ies'}, "
        f"target {rows}/{total} rows equal",
        case=f"{mode} postgres restart",
        retries=outcome.retry_count,
        waits=outcome.waits,
        restart_seconds=restart.seconds,
        rows=rows,
    )

"""Connections and servers failing mid-run, through real Dagster materializations.

A backend of the source or the sink is terminated (pg_terminate_backend) at an observable
point of the load: the source's COPY TO under way, the sink's COPY FROM into staging (or into
the target) under way, the apply waiting on a row; or the whole cluster is restarted
(pg_ctl restart -m fast, on a cluster of the test's own). The asset's RetryPolicy retries
each transient error with growing delays, the run succeeds, and the target equals the source
with the right stored position. A non-transient failure mid-run is not retried.

Extends pgflow_tests/bindings/test_retries.py (the sink backend terminated while waiting on
the target's load lock; a wrong password).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.bindings.retries import retry_policy
from pgflow.bindings.step_errors import step_errors
from pgflow.connections.errors import is_transient
from pgflow.localdb.cluster import ClusterInfo, LocalPostgres
from pgflow.sources.cdc import ReplicationError, SlotInUse
from pgflow_tests.pg import drop_slots, slot_name_for
from pgflow_tests.reliability.faults_support import (
    SAME,
    Fault,
    LockHolder,
    RunOutcome,
    SourceReadPauses,
    assert_backoff,
    copy_gate,
    copy_in_progress,
    dbname,
    execute,
    fetch,
    figures,
    items_table,
    materialize,
    stored_position,
    waiting_on_lock,
    watching,
)

ROWS = 60_000  # about 14 MB: more than the socket buffers between a paused COPY's two ends
PAUSE_AFTER = 1 << 20  # bytes a paused source COPY reads (and writes to the sink) first
BASE_DELAY = 1  # $PGFLOW_RETRY_DELAY_SECONDS in these tests
KEY = dg.AssetKey(["landing", "items"])

FULL_REFRESH = """
source: {{type: postgres, connection_id: shop, table: {{schema: public, name: items}}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: full_refresh, method: {method}}}
"""
MERGE = """
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: items}
  options: {incremental_strategy: column, incremental_column: updated_at}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: items}
  strategy: {mode: incremental_merge, unique_key: [id], merge_policy: delete_insert}
"""
CDC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: cdc, slot_name: {slot}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: incremental_merge, unique_key: [id], merge_policy: upsert}}
"""
DELTA_SINK = """
source: {{type: postgres, connection_id: shop, table: {{schema: public, name: items}}}}
sink:
  type: delta
  path: {path}
  strategy: {{mode: full_refresh}}
"""
DELTA_SYNC = """
source: {{type: delta, path: {path}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: prices}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""

ITEMS_INSERT = (
    "INSERT INTO items SELECT g, 'new ' || g, g * 0.5, now(), repeat(md5(g::text), 6)"
    " FROM generate_series(%s::int, %s::int) g"
)
CHANGES = (
    "UPDATE items SET price = price + 1, updated_at = now()",
    "INSERT INTO items SELECT g, 'new ' || g, g * 0.5, now(), repeat(md5(g::text), 6)"
    f" FROM generate_series({ROWS + 1}, {ROWS + 1000}) g",
)


@dataclass
class Pipeline:
    """Source and sink databases, a spec folder and the environment of one test."""

    source_uri: str
    sink_uri: str
    specs: Path
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch

    def spec(self, text: str) -> None:
        (self.specs / "pipeline.yaml").write_text(text)

    def run(self, key: dg.AssetKey = KEY, **kwargs: object) -> RunOutcome:
        return materialize(self.specs, self.env, key, self.monkeypatch, **kwargs)

    def equal(self, target: str = "landing.items") -> tuple[int, int]:
        """(target rows, source rows), asserting they are the same rows."""
        source = fetch(self.source_uri, SAME.format("public.items"))
        copied = fetch(self.sink_uri, SAME.format(target))
        assert copied == source
        return len(copied), len(source)


def _pipeline(
    source_uri: str, sink_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Pipeline:
    specs = tmp_path / "specs"
    specs.mkdir()
    settings = {
        "PGFLOW_CONN_SHOP": source_uri,
        "PGFLOW_CONN_WAREHOUSE": sink_uri,
        "PGFLOW_RETRY_DELAY_SECONDS": str(BASE_DELAY),
        "PGFLOW_MAX_RETRIES": "3",
        **env,
    }
    return Pipeline(source_uri, sink_uri, specs, settings, monkeypatch)


@pytest.fixture
def pipeline(
    source_uri: str, sink_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    return _pipeline(source_uri, sink_uri, tmp_path, monkeypatch)


def _succeeded(outcome: RunOutcome, retries: int) -> None:
    assert outcome.result.success, outcome.failures
    assert outcome.retry_count == retries, outcome.retries
    assert outcome.failures == []


def _mid_copy(fault: Fault, total: int) -> None:
    """The fault hit a COPY under way: past its first rows, before its last."""
    assert fault.seen_tuples is not None and 0 < fault.seen_tuples < total, fault


# -- in `make test` -----------------------------------------------------------------------------


def test_full_refresh_source_terminated_mid_copy_is_retried(pipeline: Pipeline) -> None:
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(FULL_REFRESH.format(method="truncate_insert"))
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    source_copy = Fault(
        "source COPY",
        copy_in_progress(dbname(pipeline.source_uri), "COPY TO", 1),
        then=pauses.resume(0),
    )
    with watching(pipeline.source_uri, [source_copy]):
        outcome = pipeline.run()
    _succeeded(outcome, retries=1)
    _mid_copy(source_copy, ROWS)
    assert_backoff(outcome, BASE_DELAY)
    copied, total = pipeline.equal()
    figures(
        f"FAULTS full_refresh source terminated mid-COPY (at row {source_copy.seen_tuples}): "
        f"{outcome.retry_count} retry, waited {outcome.waits[0]:.1f} s, "
        f"target {copied}/{total} rows equal",
        case="full_refresh source terminated mid-COPY",
        retries=outcome.retry_count,
        waits=outcome.waits,
        rows=copied,
    )


def test_a_cancelled_statement_fails_once_and_keeps_the_old_target(pipeline: Pipeline) -> None:
    """57014 query_canceled (pg_cancel_backend, statement_timeout) is not transient: the step
    fails without a retry and the target keeps the rows of the last good load."""
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(FULL_REFRESH.format(method="truncate_insert"))
    _succeeded(pipeline.run(), retries=0)
    before = fetch(pipeline.sink_uri, SAME.format("landing.items"))
    execute(pipeline.source_uri, "UPDATE items SET price = 0 WHERE id <= 100")
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    cancel = Fault(
        "sink COPY cancelled",
        copy_in_progress(dbname(pipeline.sink_uri), "COPY FROM", 1),
        action="cancel",
        then=pauses.resume(0),
    )
    with watching(pipeline.sink_uri, [cancel]):
        outcome = pipeline.run()
    assert not outcome.result.success
    assert outcome.retry_count == 0
    assert len(outcome.failures) == 1 and "canceling statement" in outcome.failures[0]
    assert fetch(pipeline.sink_uri, SAME.format("landing.items")) == before
    figures(
        "FAULTS full_refresh sink COPY cancelled (57014): 0 retries, step failed once, "
        f"target kept its {len(before)} old rows",
        case="cancel is not retried",
        retries=0,
        rows=len(before),
    )


def test_the_shipped_policy_backs_off_exponentially() -> None:
    policy = retry_policy({"PGFLOW_RETRY_DELAY_SECONDS": "10", "PGFLOW_MAX_RETRIES": "3"})
    assert (policy.max_retries, policy.delay) == (3, 10)
    for _ in range(50):
        waits = [policy.calculate_delay(attempt) for attempt in (1, 2, 3)]
        assert 0 <= waits[0] <= 20 <= waits[1] <= 40 <= 60 <= waits[2] <= 80
    default = retry_policy({})
    assert (default.max_retries, default.delay) == (3, 10)


def test_a_slot_busy_with_another_run_is_left_to_the_retry_policy() -> None:
    """Two runs of one CDC pipeline meet at its slot for a moment (one reads or advances it
    while the other checks it): retried like the server's 55006, not failed for good, and the
    failure names the spec file in case the retries run out."""
    spec = SimpleNamespace(name="landing_items", file="items.yaml")
    busy = SlotInUse(
        "replication slot pgflow_x is in use by another consumer (backend PID 42); stop it, "
        "or give this pipeline its own source.options.slot_name"
    )
    with pytest.raises(dg.Failure) as retried, step_errors(spec):
        raise busy
    assert retried.value.allow_retries is True
    assert retried.value.description.startswith("pipeline 'landing_items' (items.yaml): ")
    assert "is in use by another consumer" in retried.value.description
    with pytest.raises(dg.Failure) as failed, step_errors(spec):
        raise ReplicationError("replication slot pgflow_x does not exist (dropped outside pgflow?)")
    assert failed.value.allow_retries is False
    assert is_transient(psycopg.errors.ObjectInUse("replication slot is active for PID 42"))


# -- make test-faults ---------------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("method", ["truncate_insert", "exchange"])
def test_full_refresh_sink_terminated_mid_copy_is_retried(pipeline: Pipeline, method: str) -> None:
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(FULL_REFRESH.format(method=method))
    _succeeded(pipeline.run(), retries=0)  # the target exists: the COPY goes into it (or beside)
    execute(pipeline.source_uri, "DELETE FROM items WHERE id % 7 = 0")
    execute(pipeline.source_uri, ITEMS_INSERT, (ROWS + 1, ROWS + 500))
    total = fetch(pipeline.source_uri, "SELECT count(*) FROM items")[0][0]
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    sink_copy = Fault(
        "sink COPY",
        copy_in_progress(dbname(pipeline.sink_uri), "COPY FROM", 1),
        then=pauses.resume(0),
    )
    with watching(pipeline.sink_uri, [sink_copy]):
        outcome = pipeline.run()
    _succeeded(outcome, retries=1)
    _mid_copy(sink_copy, total)
    assert_backoff(outcome, BASE_DELAY)
    copied, total = pipeline.equal()
    figures(
        f"FAULTS full_refresh/{method} sink terminated mid-COPY (at row "
        f"{sink_copy.seen_tuples}): {outcome.retry_count} retry, target {copied}/{total} rows "
        "equal",
        case=f"full_refresh/{method} sink terminated mid-COPY",
        retries=outcome.retry_count,
        waits=outcome.waits,
        rows=copied,
    )


@pytest.mark.faults
def test_merge_source_then_sink_copy_then_apply_terminated(pipeline: Pipeline) -> None:
    """One run of an incremental merge loses its source mid-COPY, then its sink mid-COPY into
    staging, then its sink while the apply waits on a row: three retries, each waiting
    longer, and the target and the stored cursor are exactly right."""
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(MERGE)
    _succeeded(pipeline.run(), retries=0)
    for statement in CHANGES:
        execute(pipeline.source_uri, statement)
    changed = fetch(
        pipeline.source_uri, "SELECT count(*) FROM items WHERE updated_at > '2026-06-01'"
    )[0][0]
    # A reader holds one changed row: the apply's DELETE waits for it, observably.
    holder = LockHolder(pipeline.sink_uri, "SELECT 1 FROM landing.items WHERE id = 3 FOR UPDATE")
    sink, source = dbname(pipeline.sink_uri), dbname(pipeline.source_uri)
    pauses = SourceReadPauses(pipeline.monkeypatch, 2, PAUSE_AFTER)
    faults = [
        Fault("source COPY", copy_in_progress(source, "COPY TO", 1), then=pauses.resume(0)),
        Fault(
            "sink COPY into staging",
            copy_in_progress(sink, "COPY FROM", 1),
            then=pauses.resume(1),
        ),
        Fault("apply", waiting_on_lock(sink, "DELETE FROM"), then=holder.release),
    ]
    try:
        with watching(pipeline.sink_uri, faults) as watcher:
            outcome = pipeline.run()
    finally:
        holder.release()
    assert [f.name for f in watcher.fired] == [f.name for f in faults]
    _mid_copy(faults[0], changed)
    _mid_copy(faults[1], changed)
    _succeeded(outcome, retries=3)
    assert_backoff(outcome, BASE_DELAY)
    copied, total = pipeline.equal()
    high_water = fetch(pipeline.source_uri, "SELECT max(updated_at)::text FROM items")[0][0]
    assert stored_position(pipeline.sink_uri, "landing", "items") == high_water
    metadata = outcome.result.asset_materializations_for_node("landing__items")[0].metadata
    assert metadata["pgflow/rows_read"].value == changed  # one read of the changes, not four
    figures(
        f"FAULTS incremental_merge source mid-COPY, sink mid-COPY, sink mid-apply: "
        f"{outcome.retry_count} retries, waits {', '.join(f'{w:.1f}' for w in outcome.waits)} s, "
        f"target {copied}/{total} rows equal, cursor {high_water}",
        case="incremental_merge source, sink COPY and apply terminated",
        retries=outcome.retry_count,
        waits=outcome.waits,
        rows=copied,
    )


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def _cdc_position_is_the_slot(pipeline: Pipeline, slot: str) -> str:
    stored = stored_position(pipeline.sink_uri, "landing", "items")
    confirmed = fetch(
        pipeline.source_uri,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )[0][0]
    assert stored == confirmed
    return stored


@pytest.mark.faults
def test_cdc_snapshot_and_stream_terminated(pipeline: Pipeline, slot: str) -> None:
    """CDC: the source backend dies mid snapshot COPY (first run), the sink backend while a
    streamed batch is applied (second run); both retried, target exact, LSN stored."""
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(CDC.format(slot=slot))
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    snapshot_copy = Fault(
        "snapshot COPY",
        copy_in_progress(dbname(pipeline.source_uri), "COPY TO", 1),
        then=pauses.resume(0),
    )
    with watching(pipeline.source_uri, [snapshot_copy]):
        first = pipeline.run()
    _succeeded(first, retries=1)
    _mid_copy(snapshot_copy, ROWS)
    pipeline.equal()
    _cdc_position_is_the_slot(pipeline, slot)

    execute(
        pipeline.source_uri,
        "UPDATE items SET price = 7 WHERE id % 5 = 0; DELETE FROM items WHERE id % 11 = 0",
    )
    execute(pipeline.source_uri, ITEMS_INSERT, (ROWS + 1, ROWS + 300))
    holder = LockHolder(pipeline.sink_uri, "SELECT 1 FROM landing.items WHERE id = 5 FOR UPDATE")
    apply = Fault(
        "batch apply",
        waiting_on_lock(dbname(pipeline.sink_uri), ""),
        then=holder.release,
    )
    try:
        with watching(pipeline.sink_uri, [apply]):
            second = pipeline.run()
    finally:
        holder.release()
    _succeeded(second, retries=1)
    copied, total = pipeline.equal()
    lsn = _cdc_position_is_the_slot(pipeline, slot)
    metadata = second.result.asset_materializations_for_node("landing__items")[0].metadata
    assert metadata["pgflow/deletes"].value == ROWS // 11
    figures(
        f"FAULTS cdc source terminated mid snapshot COPY, sink terminated mid batch apply: "
        f"{first.retry_count}+{second.retry_count} retries, target {copied}/{total} rows equal, "
        f"LSN {lsn} = slot",
        case="cdc snapshot and apply terminated",
        retries=first.retry_count + second.retry_count,
        rows=copied,
    )


def _delta_rows(path: Path) -> list[tuple]:
    frame = pl.read_delta(str(path)).sort("id").select("id", "name", "price", "pad")
    return [tuple(r) for r in frame.iter_rows()]


@pytest.mark.faults
def test_delta_sink_source_terminated_mid_copy(pipeline: Pipeline, tmp_path: Path) -> None:
    items_table(pipeline.source_uri, ROWS)
    lake = tmp_path / "lake" / "items"
    pipeline.spec(DELTA_SINK.format(path=lake))
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    source_copy = Fault(
        "source COPY",
        copy_in_progress(dbname(pipeline.source_uri), "COPY TO", 1),
        then=pauses.resume(0),
    )
    with watching(pipeline.source_uri, [source_copy]):
        outcome = pipeline.run(dg.AssetKey(["delta", "items"]))
    _succeeded(outcome, retries=1)
    _mid_copy(source_copy, ROWS)
    source = [
        (i, n, float(p), pad)
        for i, n, p, pad in fetch(
            pipeline.source_uri, "SELECT id, name, price, pad FROM items ORDER BY id"
        )
    ]
    copied = [(i, n, float(p), pad) for i, n, p, pad in _delta_rows(lake)]
    assert copied == source
    table = DeltaTable(str(lake))
    assert table.version() == 0  # the killed attempt committed nothing
    figures(
        f"FAULTS delta sink source terminated mid-COPY: {outcome.retry_count} retry, Delta "
        f"version {table.version()}, {len(copied)}/{len(source)} rows equal",
        case="delta sink source terminated mid-COPY",
        retries=outcome.retry_count,
        rows=len(copied),
    )


@pytest.mark.faults
def test_delta_sync_sink_terminated_mid_copy_resumes(
    source_uri: str, sink_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delta -> Postgres with the sync's own retries off (POSTGRES_MAX_RETRIES=0): the sink
    backend dies mid-COPY into staging after some batches committed; the asset's retry
    resumes from the stored position, and the target equals the Delta table."""
    pipeline = _pipeline(
        source_uri,
        sink_uri,
        tmp_path,
        monkeypatch,
        POSTGRES_MAX_RETRIES="0",
        POSTGRES_CLIENT_BATCH_SIZE="5000",
        DELTA_CLIENT_BATCH_SIZE="5000",
    )
    lake = tmp_path / "lake" / "prices"
    n = 40_000
    for part in range(4):  # four data files
        ids = list(range(part * n // 4 + 1, (part + 1) * n // 4 + 1))
        frame = pl.DataFrame(
            {"id": ids, "price": [i * 3 for i in ids], "note": ["x" * 80] * len(ids)}
        )
        write_deltalake(str(lake), frame, mode="append")
    pipeline.spec(DELTA_SYNC.format(path=lake))
    # Terminate the sink backend mid-load once a batch and its position have committed.
    sink = dbname(sink_uri)
    faults = [
        Fault(
            "state table committed",
            ("SELECT 0, 0 FROM pg_class WHERE relname = 'pipeline_state'", ()),
            action="observe",
            fresh=False,
        ),
        Fault(
            "a batch committed",
            ("SELECT 0, 0 FROM _pgflow.pipeline_state WHERE target_table = 'prices'", ()),
            action="observe",
            fresh=False,
        ),
        Fault(
            "sink mid-load",
            (
                "SELECT pid, 0 FROM pg_stat_activity WHERE datname = %s"
                " AND application_name = 'pgflow' AND state = 'active'"
                " AND (query LIKE 'COPY%%' OR query LIKE 'INSERT%%')",
                (sink,),
            ),
        ),
    ]
    with watching(sink_uri, faults):
        outcome = pipeline.run(dg.AssetKey(["landing", "prices"]))
    _succeeded(outcome, retries=1)
    target = fetch(sink_uri, "SELECT id, price, note FROM landing.prices ORDER BY id")
    expected = [
        tuple(r)
        for r in pl.read_delta(str(lake)).sort("id").select("id", "price", "note").iter_rows()
    ]
    assert target == expected
    stored = json.loads(stored_position(sink_uri, "landing", "prices") or "{}")
    assert (stored["version"], stored["synced"], stored["finished"]) == (3, 3, True)
    metadata = outcome.result.asset_materializations_for_node("landing__prices")[0].metadata
    resumed_rows = metadata["pgflow/rows_read"].value
    assert 0 < resumed_rows < n  # the retry went on from the batches the killed try committed
    figures(
        f"FAULTS delta sync sink terminated mid-load: {outcome.retry_count} retry, resumed "
        f"(the retry read {resumed_rows} of {n} rows), target {len(target)}/{len(expected)} rows "
        "equal, version 3 stored",
        case="delta sync sink terminated mid-COPY",
        retries=outcome.retry_count,
        rows=len(target),
    )


# -- restarts of a cluster of the test's own ----------------------------------------------------


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

"""Connections failing mid-run with Delta Lake on one side: a Delta sink whose source COPY is
terminated; a Delta sync into Postgres whose sink COPY is terminated and resumes.

Part of the connection-fault tests (test_connection_faults_*.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow_tests.reliability.connection_faults_support import (
    DELTA_SINK,
    DELTA_SYNC,
    PAUSE_AFTER,
    ROWS,
    Pipeline,
    _mid_copy,
    _pipeline,
    _succeeded,
)
from pgflow_tests.reliability.faults_support import (
    Fault,
    SourceReadPauses,
    copy_in_progress,
    dbname,
    fetch,
    figures,
    items_table,
    stored_position,
    watching,
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
    n = 200_000  # 40 batches: time for the watcher (polling every 20 ms) to see one mid-COPY
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

"""Transient errors are retried (sink and Delta), others raised at once; retries run out;
a retry stops when another run moved the stored position."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgflow.flows.delta_sync import upsert
from pgflow.flows.delta_sync.errors import ConcurrentSync
from pgflow.flows.delta_sync.settings import SyncSettings
from pgflow.sources import delta
from pgflow_tests.flows.delta_sync.support import (
    FailOnCall,
    delta_rows,
    orders,
    sync,
    target_rows,
    write_files,
)
from pgflow_tests.pg import execute, fetch


def test_a_transient_postgres_error_is_retried(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 2000), files=2)
    failing = FailOnCall(upsert.apply_batch, psycopg.OperationalError("flaky"), {2})
    monkeypatch.setattr(upsert, "apply_batch", failing)

    result = sync(sink_uri, path)

    assert result.retries == 1
    assert result.rows_inserted == 2000 and result.files_synced == 2
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_killed_backend_is_reconnected_and_retried(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=3)
    original = upsert.apply_batch
    killed: list[int] = []

    def kill_once(log, *args: Any, **kwargs: Any):
        if len(killed) == 0 and fetch(sink_uri, "SELECT count(*) FROM gold.orders")[0][0] > 0:
            pid = log.conn.info.backend_pid
            execute(sink_uri, "SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)
        return original(log, *args, **kwargs)

    monkeypatch.setattr(upsert, "apply_batch", kill_once)

    result = sync(sink_uri, path)

    assert len(killed) == 1 and result.retries == 1
    assert result.rows_inserted == 3000
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_transient_delta_read_error_is_retried(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=3)
    failing = FailOnCall(delta.read_batches, OSError("connection reset by peer"), {2})
    monkeypatch.setattr(delta, "read_batches", failing)

    result = sync(sink_uri, path)

    assert result.retries == 1
    assert target_rows(sink_uri) == delta_rows(path)


def test_retries_run_out_and_other_errors_raise_at_once(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=1)
    always = FailOnCall(upsert.apply_batch, psycopg.OperationalError("down"), set(range(99)))
    monkeypatch.setattr(upsert, "apply_batch", always)
    settings = SyncSettings(postgres_max_retries=2, postgres_retry_delay=0)
    with pytest.raises(psycopg.OperationalError, match="down"):
        sync(sink_uri, path, settings=settings)
    assert always.count == 3  # the first try and two retries

    at_once = FailOnCall(always.function, ValueError("bad data"), {1})
    monkeypatch.setattr(upsert, "apply_batch", at_once)
    with pytest.raises(ValueError, match="bad data"):
        sync(sink_uri, path, settings=settings)
    assert at_once.count == 1


def test_a_retry_stops_when_another_run_moved_the_position(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 2000), files=2)
    original = upsert.apply_batch

    def other_run_then_fail(*args: Any, **kwargs: Any):
        if fetch(sink_uri, "SELECT count(*) FROM gold.orders")[0][0] > 0:
            execute(
                sink_uri,
                'UPDATE _pgflow.pipeline_state SET value = replace(value, \'"run": "\','
                ' \'"run": "someone-else-\')',
            )
            raise psycopg.OperationalError("connection lost")
        return original(*args, **kwargs)

    monkeypatch.setattr(upsert, "apply_batch", other_run_then_fail)
    with pytest.raises(ConcurrentSync, match="changed while this run was retrying"):
        sync(sink_uri, path)

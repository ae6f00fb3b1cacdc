"""Exactly once: rows, run counter and position are one Delta commit, or nothing.

Failures are injected at the three places a load can stop: while data files are being
written (before any commit), at the commit itself, and right after the commit before the
load returns. The first two must leave the version and the stored position as they were;
after the third a retry must continue from the new position and apply nothing twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.config.model import StrategySpec
from pgflow.flows import delta_load
from pgflow.sinks.delta import stored_position
from pgflow.sinks.delta.context import ConcurrentDeltaLoad
from pgflow.sinks.delta.state import app_id, commit_properties
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.xmin import XminSource
from pgflow_tests.sinks.delta.conftest import (
    committed_position,
    delta_rows,
    execute,
    fetch,
    last_commit,
    run_delta,
)

ORDERS = """
CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamptz NOT NULL);
INSERT INTO orders
SELECT g, g * 1.5, '2024-01-01 00:00+00'::timestamptz + g * interval '1 second'
FROM generate_series(1, 300) g;
"""
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
APPEND = StrategySpec(mode="incremental_append")


def by_cursor(conn, table):
    return ColumnCursorSource(conn, table, "updated_at")


def by_xmin(conn, table):
    return XminSource(conn, table)


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(source_uri, ORDERS)
    return source_uri


def source_table(uri: str) -> list[tuple]:
    return fetch(uri, "SELECT id, amount, updated_at FROM orders ORDER BY id")


def max_cursor(uri: str) -> str:
    rows = fetch(
        uri, "SELECT set_config('TimeZone', 'UTC', true), max(updated_at)::text FROM orders"
    )
    return rows[0][1]


def state(path: Path) -> tuple[int, int | None, object]:
    table = DeltaTable(str(path))
    return table.version(), table.transaction_version(app_id("orders")), committed_position(path)


def test_incremental_merge_reads_changed_rows_and_commits_the_position(orders, tmp_path):
    path = tmp_path / "orders"
    first = run_delta(orders, path, MERGE, make_source=by_cursor)
    assert first.read is not None and first.read.full and "first run" in first.read.reason
    assert first.position_after is not None and first.position_after.value == max_cursor(orders)
    commit = last_commit(path)
    assert json.loads(commit["pgflow.position"])["value"] == max_cursor(orders)
    assert (commit["pgflow.pipeline"], commit["pgflow.run"]) == ("orders", 1)

    execute(orders, "UPDATE orders SET amount = amount + 1, updated_at = '2030-01-01 00:00+00'"
            " WHERE id IN (5, 6, 7, 8, 9)")  # fmt: skip
    second = run_delta(orders, path, MERGE, make_source=by_cursor)

    assert second.read is not None and not second.read.full
    assert second.position_before == first.position_after
    assert second.rows_read == 5  # the row at the old mark was applied: skipped (cursor ties)
    assert second.metrics["num_target_rows_updated"] == 5  # the boundary row is unchanged
    assert second.position_after.value == "2030-01-01 00:00:00+00"
    assert state(path) == (1, 2, second.position_after)
    assert stored_position(str(path), "orders") == second.position_after
    assert delta_rows(path) == source_table(orders)


def test_a_failure_while_files_are_written_changes_nothing(orders, tmp_path, monkeypatch):
    path = tmp_path / "orders"
    run_delta(orders, path, MERGE, make_source=by_cursor)
    before, rows_before = state(path), delta_rows(path)
    execute(orders, "UPDATE orders SET amount = 0, updated_at = '2030-01-01' WHERE id > 100")
    real = ArrowRead.record_batches

    def written_then_failing(self):
        yield from real(self)  # every batch reaches delta-rs, which writes its files...
        raise RuntimeError("injected: the process dies before the commit")

    monkeypatch.setattr(ArrowRead, "record_batches", written_then_failing)
    with pytest.raises(RuntimeError, match="injected"):
        run_delta(orders, path, MERGE, make_source=by_cursor)
    monkeypatch.undo()

    assert state(path) == before
    assert delta_rows(path) == rows_before
    retry = run_delta(orders, path, MERGE, make_source=by_cursor)
    assert retry.rows == 200 and delta_rows(path) == source_table(orders)


def test_a_failure_at_the_commit_changes_nothing(orders, tmp_path, monkeypatch):
    path = tmp_path / "orders"
    run_delta(orders, path, APPEND, make_source=by_xmin)
    before, rows_before = state(path), delta_rows(path)
    execute(orders, "INSERT INTO orders SELECT g, 1, now() FROM generate_series(301, 350) g")
    real = ArrowRead.record_batches
    blocker = path / "_delta_log" / f"{before[0] + 1:020d}.json"

    def commit_slot_taken(self):
        yield from real(self)
        blocker.write_text("not a commit\n")  # the next version's commit file cannot be written

    monkeypatch.setattr(ArrowRead, "record_batches", commit_slot_taken)
    with pytest.raises(Exception, match="version=1"):
        run_delta(orders, path, APPEND, make_source=by_xmin)
    monkeypatch.undo()
    blocker.unlink()

    assert state(path) == before
    data_files = {p.name for p in path.glob("*.parquet")}
    assert len(data_files) > len(DeltaTable(str(path)).file_uris())  # written, not committed
    assert delta_rows(path) == rows_before
    run_delta(orders, path, APPEND, make_source=by_xmin)
    assert delta_rows(path) == source_table(orders)


def test_a_failure_after_the_commit_is_not_applied_twice_by_the_retry(
    orders, tmp_path, monkeypatch
):
    path = tmp_path / "orders"
    run_delta(orders, path, APPEND, make_source=by_xmin)  # append: a second apply would duplicate
    execute(orders, "INSERT INTO orders SELECT g, 2, now() FROM generate_series(301, 320) g")

    def crash(*args, **kwargs):
        raise RuntimeError("injected: the process dies right after the commit")

    monkeypatch.setattr(delta_load, "_result", crash)
    with pytest.raises(RuntimeError, match="injected"):
        run_delta(orders, path, APPEND, make_source=by_xmin)
    monkeypatch.undo()
    committed = state(path)
    assert committed[:2] == (1, 2)

    retry = run_delta(orders, path, APPEND, make_source=by_xmin)

    assert retry.read is not None and not retry.read.full
    assert retry.position_before == committed[2]
    assert retry.rows_read == 0 and retry.rows == 0
    assert delta_rows(path) == source_table(orders)  # every row exactly once


def test_a_concurrent_run_of_the_same_pipeline_cannot_commit_an_older_read(
    orders, tmp_path, monkeypatch
):
    path = tmp_path / "orders"
    run_delta(orders, path, MERGE, make_source=by_cursor)
    real_open = delta_load.open_table

    def other_run_commits_meanwhile(*args, **kwargs):
        table = real_open(*args, **kwargs)  # this load builds on version 0 ...
        empty = pl.read_delta(str(path)).clear()
        other = commit_properties("orders", 2, None)  # ... while another run commits run 2
        write_deltalake(str(path), empty, mode="append", commit_properties=other)
        return table

    monkeypatch.setattr(delta_load, "open_table", other_run_commits_meanwhile)
    with pytest.raises(ConcurrentDeltaLoad, match="run again"):
        run_delta(orders, path, MERGE, make_source=by_cursor)
    assert DeltaTable(str(path)).version() == 1  # only the other run's commit


def test_the_position_is_found_behind_other_writers_commits(orders, tmp_path):
    path = tmp_path / "orders"
    first = run_delta(orders, path, MERGE, make_source=by_cursor)
    DeltaTable(str(path)).optimize.compact()  # a maintenance commit on top
    DeltaTable(str(path)).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)

    second = run_delta(orders, path, MERGE, make_source=by_cursor)

    assert second.position_before == first.position_after
    # Found with the position: the row at the mark was applied and is skipped.
    assert not second.read.full and second.rows_read == 0

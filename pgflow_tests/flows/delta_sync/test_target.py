"""The Delta sync's hold on its target: a failed first sync leaves no empty table, and a
position never outlives the target it was applied to."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import psycopg
import pytest

from pgflow.flows.delta_sync import target, upsert
from pgflow.flows.delta_sync.errors import DuplicateKeyError
from pgflow.sinks.postgres import position_owner
from pgflow.sinks.postgres.state import read_position
from pgflow_tests.flows.delta_sync.support import (
    TARGET,
    FailOnCall,
    delta_rows,
    orders,
    sync,
    target_rows,
    write_files,
)
from pgflow_tests.pg import execute, fetch


def target_exists(uri: str) -> bool:
    return fetch(uri, "SELECT to_regclass('gold.orders') IS NOT NULL") == [(True,)]


def test_a_first_sync_failing_before_its_first_batch_leaves_no_table(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=2)
    failing = FailOnCall(upsert.apply_batch, ValueError("bad batch"), {1})
    monkeypatch.setattr(upsert, "apply_batch", failing)
    with pytest.raises(ValueError, match="bad batch"):
        sync(sink_uri, path)
    assert not target_exists(sink_uri)
    with psycopg.connect(sink_uri) as conn:
        assert read_position(conn, TARGET) is None

    monkeypatch.setattr(upsert, "apply_batch", failing.function)
    again = sync(sink_uri, path)
    assert again.created_target and again.rows_inserted == 1000
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_first_sync_refused_for_its_data_leaves_no_table(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "dups")
    write_files(path, orders(0, 10), files=1)
    write_files(path, orders(5, 6), files=1)  # key 5 twice
    with pytest.raises(DuplicateKeyError):
        sync(sink_uri, path)
    assert not target_exists(sink_uri)


def test_a_first_sync_that_committed_batches_keeps_them_for_the_resume(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=2)
    failing = FailOnCall(upsert.apply_batch, ValueError("bad batch"), {2})
    monkeypatch.setattr(upsert, "apply_batch", failing)
    with pytest.raises(ValueError, match="bad batch"):
        sync(sink_uri, path)
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(500,)]
    monkeypatch.setattr(upsert, "apply_batch", failing.function)
    assert sync(sink_uri, path).plan == "resume"
    assert target_rows(sink_uri) == delta_rows(path)


def test_another_table_under_the_targets_name_is_synced_from_scratch(
    tmp_path: Path, sink_uri: str
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 500), files=1)
    sync(sink_uri, path)
    # Someone replaces the target with a table of the same shape and rows of their own.
    for statement in (
        "ALTER TABLE gold.orders RENAME TO old_orders",
        "CREATE TABLE gold.orders (LIKE gold.old_orders INCLUDING ALL)",
        "INSERT INTO gold.orders SELECT * FROM gold.old_orders WHERE id < 5",
        "UPDATE gold.orders SET id = id + 1000000, note = 'junk'",
        "DROP TABLE gold.old_orders",
    ):
        execute(sink_uri, statement)

    result = sync(sink_uri, path)
    assert not result.skipped and result.plan == "full"
    assert result.position_reset == position_owner.TARGET_REPLACED
    assert result.rows_inserted == 500
    assert target_rows(sink_uri) == delta_rows(path)  # the junk is gone
    assert sync(sink_uri, path).skipped


def test_a_dropped_target_says_its_position_was_reset(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 500), files=1)
    sync(sink_uri, path)
    execute(sink_uri, "DROP TABLE gold.orders")
    result = sync(sink_uri, path)
    assert result.created_target and result.rows_inserted == 500
    assert result.position_reset == position_owner.TARGET_DROPPED
    assert target_rows(sink_uri) == delta_rows(path)


@pytest.mark.parametrize(("deletes", "cdf"), [("key_pass", False), ("cdf", True), ("none", False)])
def test_a_source_table_recreated_at_its_path_is_synced_from_scratch(
    tmp_path: Path, sink_uri: str, deletes: str, cdf: bool
) -> None:
    # Another Delta table at the same path restarts the version numbers: version 1 again must
    # not read as "already synced", nor its files as "the new ones since version 1".
    path = str(tmp_path / "orders")
    options = {"configuration": {"delta.enableChangeDataFeed": "true"}} if cdf else {}
    write_files(path, orders(0, 400), files=2, **options)
    sync(sink_uri, path, deletes=deletes)
    shutil.rmtree(path)
    write_files(
        path, orders(300, 500).with_columns(note=pl.lit("second table")), files=2, **options
    )
    result = sync(sink_uri, path, deletes=deletes)
    assert result.plan == "full"
    assert result.position_reset == target.SOURCE_REPLACED
    if deletes == "none":  # kept by request: the rows the new table does not have stay
        assert target_rows(sink_uri)[300:] == delta_rows(path)
        assert len(target_rows(sink_uri)) == 500
    else:
        assert target_rows(sink_uri) == delta_rows(path)
        assert result.deletes.startswith("key_pass")  # also for cdf: the feed knows no old rows
    assert sync(sink_uri, path, deletes=deletes).plan == "skip"

"""Rows whose key left the Delta table: kept (none), removed by keys (key_pass) or by the
change data feed (cdf), with key_pass when the feed cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.flows.delta_sync import upsert
from pgflow.sources import delta
from pgflow_tests.flows.delta_sync.support import (
    FailOnCall,
    delta_rows,
    orders,
    sync,
    target_rows,
    write_files,
)
from pgflow_tests.pg import fetch


@pytest.mark.parametrize("deletes", ["none", "key_pass"])
def test_deletes_none_keeps_and_key_pass_removes(
    tmp_path: Path, sink_uri: str, deletes: str
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=3)
    sync(sink_uri, path, deletes=deletes)
    DeltaTable(path).delete("id % 10 = 0")

    result = sync(sink_uri, path, deletes=deletes)

    if deletes == "none":
        assert result.rows_deleted == 0
        assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(3000,)]
    else:
        assert result.rows_deleted == 300 and result.deletes == "key_pass"
        assert target_rows(sink_uri) == delta_rows(path)


def test_deletes_from_the_change_data_feed(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    cdf = {"delta.enableChangeDataFeed": "true"}
    write_files(path, orders(0, 2000), files=2, configuration=cdf)
    first = sync(sink_uri, path, deletes="cdf")
    assert first.rows_deleted == 0
    table = DeltaTable(path)
    table.delete("id < 50")  # gone
    write_deltalake(path, orders(10, 20), mode="append")  # ... but 10..19 come back
    DeltaTable(path).update(updates={"status": "'late'"}, predicate="id = 1500")

    result = sync(sink_uri, path, deletes="cdf")

    assert result.deletes == "cdf"
    assert result.rows_deleted == 40
    assert result.rows_updated == 1
    assert target_rows(sink_uri) == delta_rows(path)


def test_an_unreadable_change_data_feed_falls_back_to_key_pass(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    options = {"configuration": {"delta.enableChangeDataFeed": "true"}}
    write_deltalake(path, orders(0, 1000), **options)  # version 0
    sync(sink_uri, path, deletes="cdf")  # synced: version 0
    write_deltalake(path, orders(1000, 2000), mode="append")  # version 1
    DeltaTable(path).delete("id % 500 = 0")  # version 2: 0, 500, 1000, 1500
    # A feed that cannot be read (e.g. its files were vacuumed away): not a transient error.
    unreadable = FailOnCall(delta.deleted_keys, ValueError("cdc file missing"), {1})
    monkeypatch.setattr(delta, "deleted_keys", unreadable)

    result = sync(sink_uri, path, deletes="cdf")

    assert result.deletes.startswith(
        "key_pass (the change data feed of versions 1..2 is unreadable"
    )
    assert result.rows_deleted == 2  # 0 and 500: the target never had 1000 and 1500
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_first_sync_interrupted_then_resumed_with_cdf_deletes_by_keys(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    options = {"configuration": {"delta.enableChangeDataFeed": "true"}}
    write_files(path, orders(0, 2000), files=2, **options)
    failing = FailOnCall(upsert.apply_batch, RuntimeError("injected"), {3})
    monkeypatch.setattr(upsert, "apply_batch", failing)
    with pytest.raises(RuntimeError):
        sync(sink_uri, path, deletes="cdf")  # the first sync stops halfway: none finished
    monkeypatch.setattr(upsert, "apply_batch", failing.function)
    DeltaTable(path).delete("id % 500 = 0")  # 2 rows of each file

    # No sync finished: the target may hold rows the feed never saw, so keys decide.
    result = sync(sink_uri, path, deletes="cdf")

    assert result.deletes == "key_pass (no finished sync to read the change data feed from)"
    assert result.rows_deleted == 2  # the 2 of the file the interrupted sync applied
    assert target_rows(sink_uri) == delta_rows(path)

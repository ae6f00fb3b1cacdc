"""How a Delta member starts: a position of another slot is no position (a snapshot, and
the result says why), `snapshot: never` creates the table empty in the source's shape, and a
table joining a running group is loaded while the others stream."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from pgflow.config.model import TableName
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.flows.cdc.group_support import results, run_group, tables_sql
from pgflow_tests.flows.cdc_delta.conftest import (
    ORDERS,
    SOURCE,
    delta_frame,
    execute,
    fresh_load,
    run_delta,
)
from pgflow_tests.flows.cdc_delta.test_group import delta_member
from pgflow_tests.pg import drop_slots


def test_a_position_of_another_slot_means_a_snapshot(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    other = slot + "_other"
    try:
        result = run_delta(source_uri, path, other)
        assert result.snapshot is not None and result.snapshot.rows == 200
        assert "holds no position" in result.snapshot_reason
        assert f"cdc:{SOURCE}:{other}" in result.snapshot_reason
        execute(source_uri, "UPDATE orders SET status = 'x' WHERE id = 3")
        assert run_delta(source_uri, path, other).changes == 1
    finally:
        drop_slots(source_uri, other)


def test_snapshot_never_creates_the_table_empty_in_the_source_shape(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    first = run_delta(source_uri, path, slot, snapshot="never", deleted_column="gone")
    assert first.snapshot is None and first.position_after is not None
    empty = delta_frame(path)
    assert empty.height == 0
    fresh = fresh_load(source_uri, SOURCE, tmp_path / "fresh")
    assert empty.drop("gone").schema == fresh.schema
    assert empty.schema["gone"] == pl.Datetime("us", "UTC")
    execute(source_uri, "UPDATE orders SET status = 'seen' WHERE id <= 2")
    run_delta(source_uri, path, slot, snapshot="never", deleted_column="gone")
    assert delta_frame(path)["status"].to_list() == ["seen", "seen"]


def test_a_truncate_alone_empties_the_table(source_uri: str, slot: str, tmp_path: Path) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    execute(source_uri, "TRUNCATE orders")
    result = run_delta(source_uri, path, slot)
    assert result.batches[0].truncates == 1
    assert delta_frame(path).height == 0


def test_a_delta_table_joins_a_running_group(source_uri: str, slot: str, tmp_path: Path) -> None:
    execute(source_uri, tables_sql("alpha", "beta"))
    alpha = delta_member("alpha", source_uri, tmp_path / "alpha")
    results(run_group(source_uri, slot, [alpha]))
    execute(source_uri, "UPDATE alpha SET label = 'during' WHERE id = 1")
    beta = delta_member("beta", source_uri, tmp_path / "beta")
    joined = results(run_group(source_uri, slot, [alpha, beta]))
    assert joined["alpha"].changes == 1 and joined["beta"].snapshot is not None
    execute(source_uri, "UPDATE beta SET label = 'after' WHERE id <= 2")
    again = results(run_group(source_uri, slot, [alpha, beta]))
    assert again["beta"].changes == 2
    for name in ("alpha", "beta"):
        table = TableName("public", name)
        expected = fresh_load(source_uri, table, tmp_path / f"fresh_{name}", numeric_as="string")
        assert delta_frame(tmp_path / name).equals(expected.sort("id"))
    assert DeltaTable(str(tmp_path / "beta")).version() >= 1


def test_an_idle_table_does_not_pin_the_wal(source_uri: str, slot: str, tmp_path: Path) -> None:
    """Little WAL since its position: no commit (no new version per run). Past one WAL
    segment: an empty commit moves the position, and with it the slot."""
    execute(source_uri, ORDERS + "CREATE TABLE public.filler (body text);")
    path = tmp_path / "orders"
    first = run_delta(source_uri, path, slot)
    version = DeltaTable(str(path)).version()
    assert run_delta(source_uri, path, slot).delta_version == version
    # WAL of a table outside the publication: nothing for the member, 20+ MB for the slot.
    execute(
        source_uri,
        "INSERT INTO filler SELECT repeat(md5(g::text), 7) FROM generate_series(1, 80000) g",
    )
    moved = run_delta(source_uri, path, slot)
    assert moved.batches == [] and moved.delta_version == version + 1
    assert first.position_after is not None and moved.position_after is not None
    assert moved.position_after.value != first.position_after.value
    assert moved.slot is not None and moved.slot.confirmed_flush is not None
    assert moved.slot.confirmed_flush >= lsn_to_int(moved.position_after.value)


def test_reset_rewrites_the_table_with_a_new_start(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    first = run_delta(source_uri, path, slot)
    execute(source_uri, "DELETE FROM orders WHERE id > 10; UPDATE orders SET note = 'r'")
    again = run_delta(source_uri, path, slot, reset=True)
    assert again.snapshot is not None and again.snapshot_reason == "reset requested"
    assert again.batches == []
    assert first.position_after is not None and again.position_after is not None
    assert lsn_to_int(again.position_after.value) > lsn_to_int(first.position_after.value)
    assert delta_frame(path).equals(fresh_load(source_uri, SOURCE, tmp_path / "f").sort("id"))
    execute(source_uri, "UPDATE orders SET note = 'after' WHERE id = 1")
    assert run_delta(source_uri, path, slot).changes == 1

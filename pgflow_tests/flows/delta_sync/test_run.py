"""The sync end to end: a first load equals the Delta table; empty tables and versions."""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable, write_deltalake

from pgflow_tests.flows.delta_sync.support import delta_rows, orders, sync, target_rows, write_files
from pgflow_tests.pg import fetch


def test_initial_load_equals_the_delta_table(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=4)

    result = sync(sink_uri, path)

    assert not result.skipped and result.plan == "full" and result.created_target
    assert (result.files_total, result.files_planned, result.files_synced) == (4, 4, 4)
    assert result.rows_read == result.rows_inserted == 3000
    assert result.rows_updated == result.rows_unchanged == result.rows_deleted == 0
    assert target_rows(sink_uri) == delta_rows(path)
    types = dict(
        fetch(
            sink_uri,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'gold.orders'::regclass AND attnum > 0",
        )
    )
    assert types == {
        "id": "bigint",
        "customer_id": "integer",
        "status": "text",
        "amount": "numeric(12,2)",
        "created_at": "timestamp with time zone",
        "note": "text",
        "hdiff": "text",
        "sync_ldts": "timestamp with time zone",
    }
    (key,) = fetch(
        sink_uri,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'gold.orders'::regclass AND contype = 'p'",
    )
    assert key == ("PRIMARY KEY (id)",)


def test_an_empty_table_and_an_empty_version(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_deltalake(path, orders(0, 0))
    first = sync(sink_uri, path, deletes="key_pass")
    assert first.created_target and first.rows_read == 0 and first.files_total == 0
    write_deltalake(path, orders(0, 10), mode="append")
    DeltaTable(path).delete("id >= 0")  # a version with no files at all

    result = sync(sink_uri, path, deletes="key_pass")

    assert (result.files_total, result.rows_read, result.rows_deleted) == (0, 0, 0)
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(0,)]

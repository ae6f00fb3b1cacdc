"""Bad Delta paths and endpoints: each a clear error naming the path and the fix, no secret.

A local folder holding other files, an S3 prefix whose _delta_log is not a table, an S3
endpoint that refuses the credentials, and (Delta -> Postgres) a table with column mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.sinks.delta.table import DeltaStorageError, NotADeltaTable
from pgflow.sources.delta import UnsupportedDeltaTable
from pgflow_tests.s3_server import SECRET_KEY, S3Delta, S3Server
from pgflow_tests.sinks.delta.conftest import execute, fetch, run_delta


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(
        source_uri,
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text);"
        " INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 20) g",
    )
    return source_uri


@pytest.fixture
def refusing_server() -> Iterator[S3Server]:
    server = S3Server(check_credentials=True).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_local_folder_with_other_files_is_not_written_over(orders, tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    (folder / "2024").mkdir(parents=True)
    (folder / "2024" / "export.csv").write_text("id,note\n1,a\n")
    (folder / "data.parquet").write_bytes(b"not pgflow's")

    with pytest.raises(NotADeltaTable, match="holds 2 file") as refused:
        run_delta(orders, folder)

    assert str(folder) in str(refused.value) and "new or empty location" in str(refused.value)
    assert sorted(p.name for p in folder.rglob("*")) == ["2024", "data.parquet", "export.csv"]


def test_what_a_failed_first_load_left_is_still_reused(orders, tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    (folder / "_delta_log").mkdir(parents=True)
    (folder / "_delta_log" / "_commit_0.json.tmp").write_text("")
    left = folder / "part-00000-0b5e4d1c-2b1f-4c55-9a40-1d8b9c3f7e21-c000.snappy.parquet"
    left.write_bytes(b"unreferenced")
    # killed mid-write: object_store's name for a local file it has not renamed yet
    (folder / f"{left.name}#1").write_bytes(b"half")

    result = run_delta(orders, folder)

    assert result.created_table and pl.read_delta(str(folder)).height == 20


def test_an_s3_prefix_with_other_objects_is_not_written_over(orders, s3_delta: S3Delta) -> None:
    s3_delta.bucket.put_object("lake/orders/export/2024.csv", b"id,note\n1,a\n")
    s3_delta.bucket.put_object("lake/orders/_SUCCESS", b"spark")
    s3_delta.bucket.put_object("lake/orders-2/x.csv", b"a sibling prefix, not inside")
    uri = s3_delta.uri("lake/orders")

    with pytest.raises(NotADeltaTable, match="holds 2 file") as refused:
        run_delta(orders, uri, storage_options=s3_delta.storage_options)

    assert uri in str(refused.value) and "export/2024.csv" in str(refused.value)
    assert SECRET_KEY not in str(refused.value)
    assert len(s3_delta.bucket_keys("lake/")) == 3  # nothing written


def test_data_files_a_failed_first_load_left_on_s3_are_no_obstacle(
    orders, s3_delta: S3Delta
) -> None:
    left = "part-00000-0b5e4d1c-2b1f-4c55-9a40-1d8b9c3f7e21-c000.snappy.parquet"
    s3_delta.bucket.put_object(f"lake/orders/{left}", b"unreferenced")
    uri = s3_delta.uri("lake/orders")
    result = run_delta(orders, uri, storage_options=s3_delta.storage_options)
    assert result.created_table
    assert pl.read_delta(uri, storage_options=s3_delta.storage_options).height == 20


def test_an_s3_prefix_whose_log_is_not_a_table_is_refused(orders, s3_delta: S3Delta) -> None:
    s3_delta.bucket.put_object("lake/orders/_delta_log/00000000000000000000.json", b"garbage")
    uri = s3_delta.uri("lake/orders")

    with pytest.raises(NotADeltaTable, match="_delta_log") as refused:
        run_delta(orders, uri, storage_options=s3_delta.storage_options)

    assert uri in str(refused.value) and SECRET_KEY not in str(refused.value)
    assert s3_delta.bucket_keys() == ["lake/orders/_delta_log/00000000000000000000.json"]


def test_refused_credentials_name_the_path_and_the_settings_never_the_secret(
    orders, refusing_server: S3Server, caplog, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    bucket = refusing_server.bucket_unchecked("lake")
    uri = bucket.uri("orders")

    with pytest.raises(DeltaStorageError, match="refused the credentials") as refused:
        run_delta(
            orders,
            uri,
            StrategySpec(mode="full_refresh"),
            **{"storage_options": bucket.storage_options()},
        )

    message = str(refused.value)
    assert uri in message and "PGFLOW_DELTA_AWS_SECRET_ACCESS_KEY" in message
    assert not refused.value.transient
    out, err = capfd.readouterr()
    for text in (message, caplog.text, out, err):
        assert SECRET_KEY not in text


def test_a_table_with_column_mapping_on_s3_is_refused_by_the_sync(
    sink_uri: str, s3_delta: S3Delta
) -> None:
    uri = s3_delta.uri("lake/mapped")
    write_deltalake(
        uri,
        pl.DataFrame({"id": [1, 2]}),
        configuration={"delta.columnMapping.mode": "name"},
        storage_options=s3_delta.storage_options,
    )
    with pytest.raises(UnsupportedDeltaTable, match="column mapping") as refused:
        sync_delta(
            sink_uri,
            uri,
            TableName("gold", "mapped"),
            ("id",),
            pipeline="mapped",
            storage_options=s3_delta.storage_options,
        )
    assert uri in str(refused.value) and "Rewrite the table" in str(refused.value)


def test_deletion_vectors_allowed_but_absent_sync_normally_from_s3(
    sink_uri: str, s3_delta: S3Delta
) -> None:
    # delta-rs writes no deletion vectors (its deletes copy on write): the feature is on, the
    # table has none, so the sync reads it; a table with vectors present is refused as locally.
    uri = s3_delta.uri("lake/dv")
    options = s3_delta.storage_options
    frame = pl.DataFrame({"id": [1, 2, 3]})
    config = {"delta.enableDeletionVectors": "true"}
    write_deltalake(uri, frame, configuration=config, storage_options=options)
    DeltaTable(uri, storage_options=options).delete("id = 2")
    sync_delta(
        sink_uri, uri, TableName("gold", "dv"), ("id",), pipeline="dv", storage_options=options
    )
    assert fetch(sink_uri, "SELECT id FROM gold.dv ORDER BY id") == [(1,), (3,)]

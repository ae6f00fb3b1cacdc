"""File locations polars can open for Delta tables whose local path needs encoding."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import polars as pl
import pytest
from arro3.core import Table
from deltalake import DeltaTable, write_deltalake

from pgflow.sources.delta_paths import _real_root, file_uris, scan_delta

REGIONS = ["north east", "c%20d", "ü/x", ""]


def write(path: Path, mode: str = "append", **options) -> None:
    frame = pl.DataFrame({"id": [1, 2, 3, 4], "region": REGIONS, "v": [0.5, None, 2.0, 3.0]})
    write_deltalake(str(path), Table.from_arrow(frame), mode=mode, **options)


def test_file_uris_name_files_that_exist_partition_directories_included(tmp_path):
    path = tmp_path / "my lake" / "Orders ü 100%"
    write(path, partition_by=["region"])

    uris = file_uris(DeltaTable(str(path)))

    assert len(uris) == 4 and all(os.path.isfile(uri) for uri in uris)
    assert not any(os.path.isfile(uri) for uri in DeltaTable(str(path)).file_uris())


def test_a_scan_reads_every_version_and_pushes_filters_down(tmp_path):
    path = tmp_path / "my lake" / "Straße 東京"
    write(path, partition_by=["region"])
    write(path)

    assert scan_delta(path).select(pl.len()).collect().item() == 8
    assert scan_delta(path, version=0).select(pl.len()).collect().item() == 4
    east = scan_delta(path).filter(pl.col("region") == "north east").collect()
    assert east.height == 2 and east["id"].to_list() == [1, 1]
    rows = scan_delta(path, version=0).select("id", "region").sort("id").collect().rows()
    assert rows == list(zip([1, 2, 3, 4], REGIONS, strict=True))


def test_a_table_that_allows_deletion_vectors_but_has_none_is_read(tmp_path):
    path = tmp_path / "my lake" / "dv ü"
    write(path, configuration={"delta.enableDeletionVectors": "true"})
    DeltaTable(str(path)).delete("id = 2")  # delta-rs rewrites the file: no vector

    assert sorted(scan_delta(path).collect()["id"].to_list()) == [1, 3, 4]


def test_object_store_uris_get_the_real_root_too():
    # deltalake stores the keys under their real names (flows/test_delta_s3.py reads them).
    uris = ["s3://bucket/my%20lake/t/part-0.parquet"]
    assert _real_root("s3://bucket/my%20lake/t", uris) == ["s3://bucket/my lake/t/part-0.parquet"]
    plain = ["s3://bucket/lake/t/part-0.parquet"]
    assert _real_root("s3://bucket/lake/t", plain) == plain
    assert _real_root("file:///plain/t/", ["/plain/t/a b.parquet"]) == ["/plain/t/a b.parquet"]


def test_storage_options_reach_the_object_store():
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    options = {
        "aws_endpoint_url": f"http://127.0.0.1:{port}",
        "aws_allow_http": "true",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "aws_region": "us-east-1",
        "max_retries": "0",
    }
    with pytest.raises(OSError, match=f"(?s)127.0.0.1:{port}.*Connection refused"):
        scan_delta("s3://bucket/lake/orders", options)

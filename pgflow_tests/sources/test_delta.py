"""Reading Delta tables: snapshot, files, typed partition values, batches, CDF deletes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.sources import delta


def _read_all(snapshot: delta.DeltaSnapshot, batch_size: int = 1000) -> pl.DataFrame:
    frames = [
        batch for file in snapshot.files for batch in delta.read_batches(snapshot, file, batch_size)
    ]
    return pl.concat(frames)


def test_snapshot_lists_sorted_files_with_typed_partition_values(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "n": pl.Series([1, 2, None, 2], dtype=pl.Int32),
            "d": [dt.date(2024, 1, 1), None, dt.date(2024, 1, 2), dt.date(2024, 1, 1)],
            "s": ["a b/c", "x=y", None, ""],
            "v": ["one", "two", "three", "four"],
        }
    )
    write_deltalake(path, frame, partition_by=["n", "d", "s"])
    snapshot = delta.open_snapshot(path)

    assert snapshot.version == 0
    assert snapshot.partition_columns == ("n", "d", "s")
    assert [f.path for f in snapshot.files] == sorted(f.path for f in snapshot.files)
    assert snapshot.rows == 4
    values = {f.partition_values["n"] for f in snapshot.files}
    assert values == {1, 2, None}  # typed, NULL partitions as None

    read = _read_all(snapshot).sort("id")
    # Partition columns come back from the log in the schema's types (not from the path);
    # an empty string partition value is NULL in Delta (Spark reads it so too).
    expected = frame.with_columns(pl.col("s").replace("", None))
    assert read.schema == frame.schema
    assert read.to_dicts() == expected.to_dicts()


def test_batches_are_bounded_and_resume_at_an_offset(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    write_deltalake(path, pl.DataFrame({"id": range(2500), "v": [str(i) for i in range(2500)]}))
    snapshot = delta.open_snapshot(path)
    (file,) = snapshot.files

    batches = list(delta.read_batches(snapshot, file, 1000))
    assert sum(b.height for b in batches) == 2500
    assert max(b.height for b in batches) <= 1000
    assert pl.concat(batches)["id"].to_list() == list(range(2500))  # the file's order

    tail = pl.concat(list(delta.read_batches(snapshot, file, 1000, offset=2100)))
    assert tail["id"].to_list() == list(range(2100, 2500))
    keys = pl.concat(list(delta.read_batches(snapshot, file, 1000, columns=["id"])))
    assert keys.columns == ["id"]


def test_old_files_get_added_columns_as_nulls(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    write_deltalake(path, pl.DataFrame({"id": [1], "a": ["x"]}))
    write_deltalake(
        path,
        pl.DataFrame({"id": [2], "a": ["y"], "b": [Decimal("1.25")]}),
        mode="append",
        schema_mode="merge",
    )
    snapshot = delta.open_snapshot(path)
    assert snapshot.column_names == ("id", "a", "b")
    rows = _read_all(snapshot).sort("id").to_dicts()
    assert rows == [{"id": 1, "a": "x", "b": None}, {"id": 2, "a": "y", "b": Decimal("1.25")}]


def test_a_pinned_version_keeps_its_files(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    write_deltalake(path, pl.DataFrame({"id": [1, 2]}))
    write_deltalake(path, pl.DataFrame({"id": [3]}), mode="append")
    assert delta.current_version(path) == 1
    old = delta.open_snapshot(path, version=0)
    assert _read_all(old)["id"].to_list() == [1, 2]
    assert delta.file_paths(path, 0) == {f.path for f in old.files}
    assert len(delta.file_paths(path, 1)) == 2


def test_column_mapping_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    write_deltalake(
        path, pl.DataFrame({"id": [1]}), configuration={"delta.columnMapping.mode": "name"}
    )
    with pytest.raises(delta.UnsupportedDeltaTable, match="column mapping"):
        delta.open_snapshot(path)


def test_deletion_vectors_allowed_but_absent_are_read(tmp_path: Path) -> None:
    # delta-rs cannot write deletion vectors: the feature is on, its deletes copy on write.
    path = str(tmp_path / "t")
    write_deltalake(
        path,
        pl.DataFrame({"id": [1, 2, 3]}),
        configuration={"delta.enableDeletionVectors": "true"},
    )
    DeltaTable(path).delete("id = 2")
    snapshot = delta.open_snapshot(path)
    assert sorted(_read_all(snapshot)["id"].to_list()) == [1, 3]


def test_change_data_feed_deleted_keys(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    config = {"delta.enableChangeDataFeed": "true"}
    write_deltalake(path, pl.DataFrame({"id": [1, 2, 3, 4], "v": ["a"] * 4}), configuration=config)
    table = DeltaTable(path)
    table.delete("id = 2")  # v1: gone for good
    table.delete("id = 3")  # v2: deleted ...
    write_deltalake(path, pl.DataFrame({"id": [3], "v": ["b"]}), mode="append")  # v3: ... back
    DeltaTable(path).update(updates={"v": "'z'"}, predicate="id = 1")  # v4: an update

    gone = delta.deleted_keys(path, ["id"], 1, 4)
    assert sorted(gone["id"].to_list()) == [2]
    assert delta.deleted_keys(path, ["id"], 3, 4).height == 0
    assert sorted(delta.deleted_keys(path, ["id"], 2, 2)["id"].to_list()) == [3]

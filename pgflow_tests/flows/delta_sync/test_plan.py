"""What a pass reads: only the new files after an append; the rest of an interrupted pass
(at a file or within one); every file when the version changed meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.flows.delta_sync import upsert
from pgflow.flows.delta_sync.settings import SyncSettings
from pgflow_tests.flows.delta_sync.support import (
    FailOnCall,
    delta_rows,
    orders,
    sync,
    target_rows,
    write_files,
)
from pgflow_tests.pg import fetch


def test_new_files_only_after_an_append(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 2000), files=4)
    sync(sink_uri, path)
    write_deltalake(path, orders(2000, 2100), mode="append")

    result = sync(sink_uri, path)

    assert result.plan == "new_files" and result.base_version == 3
    assert (result.files_total, result.files_planned) == (5, 1)
    assert result.rows_read == result.rows_inserted == 100
    assert target_rows(sink_uri) == delta_rows(path)


# Delta batches of 400 end a file with a short one; of 500 and 1000, with a full one, which
# only the file's row count tells apart from a batch in the middle.
@pytest.mark.parametrize("delta_batch_size", [400, 500, 1000])
def test_resume_after_a_failure_continues_after_the_last_synced_file(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch, delta_batch_size: int
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 6000), files=6)  # 1000 rows a file, a file a batch
    settings = SyncSettings(postgres_batch_size=1000, delta_batch_size=delta_batch_size)
    failing = FailOnCall(upsert.apply_batch, RuntimeError("injected"), {4})
    monkeypatch.setattr(upsert, "apply_batch", failing)

    with pytest.raises(RuntimeError, match="injected"):
        sync(sink_uri, path, settings=settings)
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(3000,)]
    monkeypatch.setattr(upsert, "apply_batch", failing.function)

    result = sync(sink_uri, path, settings=settings)

    assert result.plan == "resume"
    assert (result.resumed_from_file, result.resumed_from_row) == (3, 0)
    assert result.files_synced == 3
    assert result.rows_read == result.rows_inserted == 3000
    assert target_rows(sink_uri) == delta_rows(path)
    assert sync(sink_uri, path, settings=settings).skipped


def test_resume_within_a_file(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 6000), files=6)
    settings = SyncSettings(postgres_batch_size=700, delta_batch_size=300)  # batches span files
    failing = FailOnCall(upsert.apply_batch, RuntimeError("injected"), {3})
    monkeypatch.setattr(upsert, "apply_batch", failing)
    with pytest.raises(RuntimeError):
        sync(sink_uri, path, settings=settings)
    monkeypatch.setattr(upsert, "apply_batch", failing.function)

    result = sync(sink_uri, path, settings=settings)

    assert (result.resumed_from_file, result.resumed_from_row) == (1, 400)  # 2 x 700 done
    assert result.rows_read == 6000 - 1400
    assert result.rows_inserted == 4600 and result.rows_updated == 0
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_version_change_after_a_failure_starts_over(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 4000), files=4)
    settings = SyncSettings(postgres_batch_size=1000)
    failing = FailOnCall(upsert.apply_batch, RuntimeError("injected"), {3})
    monkeypatch.setattr(upsert, "apply_batch", failing)
    with pytest.raises(RuntimeError):
        sync(sink_uri, path, settings=settings)
    monkeypatch.setattr(upsert, "apply_batch", failing.function)
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(2000,)]  # 2 of 4 files
    (doomed,) = fetch(sink_uri, "SELECT count(*) FROM gold.orders WHERE id < 100")[0]
    DeltaTable(path).delete("id < 100")
    write_deltalake(path, orders(4000, 4500), mode="append")

    result = sync(sink_uri, path, settings=settings, deletes="key_pass")

    assert result.plan == "full" and "starts over" in result.reason
    assert result.resumed_from_file is None
    assert result.files_synced == result.files_total == 5
    assert result.rows_read == 4400
    # Files go in path order: which 2000 rows the failed run applied is the order's affair.
    assert result.rows_unchanged == 2000 - doomed
    assert result.rows_inserted == 4400 - result.rows_unchanged
    assert result.rows_deleted == doomed
    assert target_rows(sink_uri) == delta_rows(path)

"""What a pass reads: only the new files after an append; the rest of an interrupted pass
(at a file or within one); every file when the version changed meanwhile, or when nothing
usable is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.flows.delta_sync import target, upsert
from pgflow.flows.delta_sync.plan import PlanInputs, choose_plan
from pgflow.flows.delta_sync.position import SyncState
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


# -- the choice alone (no Delta table, no sink) ----------------------------------------------


def snapshot(version: int, files: int) -> delta.DeltaSnapshot:
    listed = tuple(
        delta.DeltaFile(f"part-{i}.parquet", f"/lake/part-{i}", 10, 5) for i in range(files)
    )
    return delta.DeltaSnapshot("/lake", version, (), (), listed, {}, table_id="t1")


def inputs(version: int = 4, files: int = 3, **options: Any) -> PlanInputs:
    fields: dict[str, Any] = {
        "path": "/lake",
        "snapshot": snapshot(version, files),
        "storage_options": None,
        "full_pass": False,
        "columns_added": False,
        "existed": True,
        "source_replaced": False,
        **options,
    }
    return PlanInputs(**fields)


def finished(version: int) -> SyncState:
    return SyncState(version, True, version, None, 3, 3, 0, "run-1", "t1")


def test_every_file_when_nothing_usable_is_stored_or_the_target_is_new() -> None:
    cases = [
        (inputs(), None, "first sync of this Delta table into the target: every file"),
        (inputs(source_replaced=True), None, f"{target.SOURCE_REPLACED}: every file"),
        (inputs(existed=False), finished(3), "the target did not exist: every file"),
        (inputs(full_pass=True), finished(3), "a full pass was asked for: every file"),
        (
            inputs(full_pass=True, columns_added=True),
            finished(3),
            "columns were added: every file",
        ),
        (
            inputs(version=2),
            finished(3),
            "the synced version 3 is newer than the table's 2 (table re-created?): every file",
        ),
    ]
    for given, stored, reason in cases:
        plan = choose_plan(given, stored)
        assert (plan.mode, plan.reason, plan.base) == ("full", reason, None)
        assert (plan.files, plan.start_file, plan.start_row) == (given.snapshot.files, 0, 0)
        assert plan.synced == (stored.synced if stored else None)


def test_an_interrupted_sync_of_another_version_starts_over() -> None:
    stored = SyncState(3, False, 2, None, 3, 1, 7, "run-1", "t1")

    plan = choose_plan(inputs(version=4), stored)

    assert plan.mode == "full" and plan.synced == 2
    assert plan.reason == "the interrupted sync was of version 3; version 4 starts over: every file"


def test_an_interrupted_full_pass_of_this_version_resumes_at_its_file_and_row() -> None:
    stored = SyncState(4, False, 2, None, 3, 1, 7, "run-1", "t1")

    plan = choose_plan(inputs(version=4), stored)

    assert (plan.mode, plan.start_file, plan.start_row, plan.base) == ("resume", 1, 7, None)
    assert plan.reason == "resuming the interrupted sync of version 4 at file 2 of 3, row 7"
    assert plan.synced == 2

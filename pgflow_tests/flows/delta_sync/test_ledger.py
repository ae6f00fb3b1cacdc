"""The sync keeps the target's row ledger (`_pgflow.pipeline_state.target_rows`) in each
batch's transaction: inserted rows added, deleted ones subtracted, so a run reports the
target's rows without counting them, and the count it keeps is the table's."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.flows.delta_sync import upsert
from pgflow.sinks.postgres.state import read_target_rows
from pgflow_tests.flows.delta_sync.support import TARGET, FailOnCall, orders, sync, write_files
from pgflow_tests.pg import execute, fetch


def ledger(uri: str) -> int | None:
    with psycopg.connect(uri) as conn:
        return read_target_rows(conn, TARGET)


def counted(uri: str) -> int:
    return int(fetch(uri, "SELECT count(*) FROM gold.orders")[0][0])


@pytest.mark.parametrize("deletes", ["key_pass", "cdf"])
def test_the_ledger_follows_inserts_updates_and_deletes(
    tmp_path: Path, sink_uri: str, deletes: str
) -> None:
    path = str(tmp_path / "orders")
    cdf = {"delta.enableChangeDataFeed": "true"}
    write_files(path, orders(0, 3000), files=3, configuration=cdf)
    sync(sink_uri, path, deletes=deletes)  # a first sync: 6 batches of 500
    assert ledger(sink_uri) == counted(sink_uri) == 3000
    DeltaTable(path).delete("id % 10 = 0")
    write_deltalake(path, orders(3000, 3100), mode="append")
    DeltaTable(path).update(updates={"status": "'late'"}, predicate="id < 100")
    result = sync(sink_uri, path, deletes=deletes)
    assert (result.rows_deleted, result.rows_inserted) == (300, 100)
    assert ledger(sink_uri) == counted(sink_uri) == 2800


def test_a_failed_batch_leaves_the_ledger_of_the_committed_ones(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 2000), files=2)
    fail = FailOnCall(upsert.apply_batch, ValueError("batch 3 fails"), {3})
    monkeypatch.setattr(upsert, "apply_batch", fail)
    with pytest.raises(ValueError, match="batch 3 fails"):
        sync(sink_uri, path)
    assert ledger(sink_uri) == counted(sink_uri) == 1000  # two batches of 500 committed
    monkeypatch.undo()
    sync(sink_uri, path)  # resumes at batch 3
    assert ledger(sink_uri) == counted(sink_uri) == 2000


def test_a_count_of_an_unknown_ledger_is_taken_once_in_the_batch(
    tmp_path: Path, sink_uri: str
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=1)
    sync(sink_uri, path)
    # A state row of an older pgflow: no count stored. The next batch counts once.
    execute(sink_uri, "UPDATE _pgflow.pipeline_state SET target_rows = NULL")
    write_deltalake(path, orders(1000, 1200), mode="append")
    sync(sink_uri, path)
    assert ledger(sink_uri) == counted(sink_uri) == 1200

"""Delta maintenance: fewer files, the same rows and types, every stored position kept.

Tables are real Delta tables written by real incremental loads from a real Postgres source
(hostile values included); concurrent writers are real commits from a second handle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from pgflow.config.model import DeltaMaintenance, StrategySpec
from pgflow.flows import delta_maintenance
from pgflow.flows.delta_maintenance import (
    MaintenanceConflict,
    RetentionRefused,
    maintain,
    maintenance_due,
)
from pgflow.sinks.delta.state import app_id, read_state
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.sinks.delta.conftest import execute, run_delta

TABLE = "Orders ü"
HOSTILE = f"""
CREATE TABLE "{TABLE}" (
    id bigint PRIMARY KEY, loose numeric, f8 float8, day date, tags text[], note text,
    updated_at timestamptz NOT NULL
);
INSERT INTO "{TABLE}" VALUES
 (1, 123456789012345678901234567890.123456789, 'NaN', '0044-03-15 BC',
  ARRAY['a', NULL, 'quote "q", comma'], repeat('x', 1048576), '2024-01-01 00:00+00'),
 (2, -0.000000001, 'Infinity', '2024-02-29', '{{}}', E'it''s\\n', '2024-01-01 00:00:01+00'),
 (3, 'NaN', '-Infinity', NULL, NULL, NULL, '2024-01-01 00:00:02+00');
"""
# keyed appends: each load adds one small file of its new rows (a merge would rewrite one)
NEW_ROWS = StrategySpec(mode="incremental_append", only_new_rows=True, unique_key=("id",))
NEXT_ID = '(SELECT coalesce(max(id), 0) FROM "{t}")'


def by_cursor(conn, table):
    return ColumnCursorSource(conn, table, "updated_at")


def add_rows(uri: str, count: int) -> None:
    """`count` new rows after the others."""
    execute(
        uri,
        f"""
        INSERT INTO "{TABLE}" (id, loose, f8, day, tags, note, updated_at)
        SELECT m + g, g * 1.5, g, '2024-01-01'::date + g, ARRAY[g::text], 'n' || g,
               '2024-01-02 00:00+00'::timestamptz + (m + g) * interval '1 second'
        FROM generate_series(1, {count}) g, {NEXT_ID.format(t=TABLE)} AS s(m);
        """,
    )


def load(uri: str, path: Path):
    return run_delta(
        uri, path, NEW_ROWS, table=TABLE, make_source=by_cursor, pipeline="orders",
        numeric_as="string",  # unconstrained numerics (NaN, 39 digits) as their exact text
    )  # fmt: skip


def snapshot(path: Path, version: int | None = None) -> pl.DataFrame:
    return pl.read_delta(str(path), version=version).sort("id")


@pytest.fixture
def loaded(source_uri: str, tmp_path: Path) -> tuple[str, Path]:
    """20 small incremental loads: at least 20 small data files."""
    execute(source_uri, HOSTILE)
    path = tmp_path / "orders_lake"  # polars 1.x cannot read a Delta path with a space
    for _ in range(20):
        load(source_uri, path)
        add_rows(source_uri, 2)
    return source_uri, path


def test_compaction_keeps_rows_types_and_the_stored_position(loaded):
    uri, path = loaded
    table = DeltaTable(str(path))
    rows_before, state_before = snapshot(path), read_state(table, "orders")
    run_before = table.transaction_version(app_id("orders"))

    result = maintain(str(path), None, DeltaMaintenance())

    assert result.files_before >= 20 and result.files_after < result.files_before
    assert result.files_compacted == result.files_before and result.files_written == 1
    assert result.version_after == result.version_before + 1  # one OPTIMIZE commit
    after = snapshot(path)
    assert after.schema == rows_before.schema
    assert after.equals(rows_before, null_equal=True)
    table = DeltaTable(str(path))
    assert table.transaction_version(app_id("orders")) == run_before
    state_after = read_state(table, "orders")
    assert state_after.position == state_before.position and not state_after.lost
    assert state_after.version == state_before.version  # the tagged commit is still found
    # within the 7-day retention nothing was vacuumed: time travel still works
    assert result.files_vacuumed == 0
    assert snapshot(path, result.version_before).equals(rows_before, null_equal=True)

    # the next incremental run reads only the new rows: the row at the old mark was applied,
    # and its hash is still found behind the OPTIMIZE commit (cursor ties)
    next_run = load(uri, path)
    assert next_run.read is not None and not next_run.read.full
    assert next_run.position_before == state_before.position
    assert (next_run.rows_read, next_run.rows) == (2, 2)
    assert snapshot(path).height == 3 + 20 * 2  # every source row, once


def test_vacuum_removes_only_unreferenced_files_older_than_the_retention(loaded):
    _, path = loaded
    stale, fresh = path / "part-leftover-old.parquet", path / "part-leftover-new.parquet"
    for leftover in (stale, fresh):  # what a failed load leaves behind
        leftover.write_bytes(b"PAR1 not referenced")
    eight_days_ago = time.time() - timedelta(days=8).total_seconds()
    os.utime(stale, (eight_days_ago, eight_days_ago))
    rows = snapshot(path)

    result = maintain(str(path), None, DeltaMaintenance())

    assert not stale.exists() and fresh.exists()
    assert result.files_vacuumed == 1
    assert snapshot(path, result.version_before).equals(rows, null_equal=True)


def test_short_retention_when_allowed_removes_the_compacted_files(loaded):
    _, path = loaded
    rows = snapshot(path)
    settings = DeltaMaintenance(vacuum_retention=timedelta(0), allow_short_retention=True)

    result = maintain(str(path), None, settings)

    assert result.files_vacuumed >= result.files_compacted >= 20
    assert snapshot(path).equals(rows, null_equal=True)
    assert len(list(path.glob("*.parquet"))) == result.files_after == 1
    with pytest.raises(FileNotFoundError):
        snapshot(path, result.version_before)  # older versions are gone with their files


def test_short_retention_without_the_flag_is_refused_before_anything_is_done(tmp_path):
    path = small_table(tmp_path, commits=2)
    version = DeltaTable(str(path)).version()
    with pytest.raises(RetentionRefused, match=r"vacuum_retention \(1h\) is below the table's"):
        maintain(str(path), None, DeltaMaintenance(vacuum_retention=timedelta(hours=1)))
    assert DeltaTable(str(path)).version() == version  # not compacted either


def small_table(tmp_path: Path, commits: int, cdc_version: int = 0) -> Path:
    """`commits` one-row appends, each carrying an app transaction as CDC's commits do."""
    path = tmp_path / "small"
    for i in range(commits):
        app = Transaction("pgflow-cdc:orders:cdc:public.orders:slot", cdc_version + i + 1)
        write_deltalake(
            str(path),
            pl.DataFrame({"id": [i], "amount": [float(i) / 3]}),
            mode="append",
            commit_properties=CommitProperties(app_transactions=[app]),
        )
    return path


def test_checkpoint_is_written_and_app_transactions_survive(tmp_path):
    path = small_table(tmp_path, commits=5, cdc_version=2**40)
    result = maintain(str(path), None, DeltaMaintenance())
    log = path / "_delta_log"
    assert result.checkpoint
    assert (log / f"{result.version_after:020d}.checkpoint.parquet").exists()
    fresh = DeltaTable(str(path))  # read from the checkpoint
    assert fresh.transaction_version("pgflow-cdc:orders:cdc:public.orders:slot") == 2**40 + 5
    assert sorted(pl.read_delta(str(path))["id"]) == [0, 1, 2, 3, 4]


def test_no_checkpoint_when_switched_off(tmp_path):
    path = small_table(tmp_path, commits=3)
    result = maintain(str(path), None, DeltaMaintenance(checkpoint=False))
    assert not result.checkpoint
    assert not list((path / "_delta_log").glob("*.checkpoint.parquet"))


def test_every_n_fires_on_the_nth_commit_only(tmp_path):
    settings = DeltaMaintenance(optimize_every=3)
    path = tmp_path / "small"
    due = []
    for i in range(7):
        write_deltalake(str(path), pl.DataFrame({"id": [i]}), mode="append")
        now_due = maintenance_due(DeltaTable(str(path)), settings)
        due.append(now_due)
        if now_due:
            maintain(str(path), None, settings)
    assert due == [False, False, True, False, False, True, False]
    assert not maintenance_due(DeltaTable(str(path)), DeltaMaintenance(optimize_every=0))


def test_every_n_restarts_even_when_there_is_nothing_to_compact(tmp_path):
    settings = DeltaMaintenance(optimize_every=1)
    path = small_table(tmp_path, commits=1)
    assert maintenance_due(DeltaTable(str(path)), settings)
    result = maintain(str(path), None, settings)
    assert result.files_compacted == 0
    assert not maintenance_due(DeltaTable(str(path)), settings)
    assert sorted(pl.read_delta(str(path))["id"]) == [0]


def _concurrent_delete(path: Path, times: int, monkeypatch) -> list[int]:
    """Each of the first `times` compactions races a writer deleting one row first."""
    real, deleted = delta_maintenance.compact, []

    def racing(table: DeltaTable, settings: DeltaMaintenance):
        if len(deleted) < times:
            victim = len(deleted)
            DeltaTable(str(path)).delete(f"id = {victim}")  # commits after `table` was read
            deleted.append(victim)
        return real(table, settings)

    monkeypatch.setattr(delta_maintenance, "compact", racing)
    return deleted


def test_a_concurrent_writer_makes_compaction_retry_once(tmp_path, monkeypatch):
    path = small_table(tmp_path, commits=6)
    deleted = _concurrent_delete(path, 1, monkeypatch)
    result = maintain(str(path), None, DeltaMaintenance())
    assert result.retried and deleted == [0]
    assert sorted(pl.read_delta(str(path))["id"]) == [1, 2, 3, 4, 5]
    assert DeltaTable(str(path)).history(1)[0]["operation"] == "OPTIMIZE"


def test_concurrent_writers_twice_fail_maintenance_cleanly(tmp_path, monkeypatch):
    path = small_table(tmp_path, commits=6)
    version = DeltaTable(str(path)).version()
    _concurrent_delete(path, 2, monkeypatch)
    with pytest.raises(MaintenanceConflict, match="it will be retried at its next run"):
        maintain(str(path), None, DeltaMaintenance())
    table = DeltaTable(str(path))
    assert table.version() == version + 2  # the two deletes, nothing of maintenance
    assert all(c["operation"] != "OPTIMIZE" for c in table.history())
    assert sorted(pl.read_delta(str(path))["id"]) == [2, 3, 4, 5]


KILLED_MAINTENANCE = """
import sys
from pgflow.config.model import DeltaMaintenance
from pgflow.flows.delta_maintenance import maintain
print("started", flush=True)
maintain(sys.argv[1], None, DeltaMaintenance(target_file_size=1 << 20))  # several files
"""


def _reached(path: Path, point: str) -> bool:
    if point == "start":
        return True
    if point == "new file":  # compaction writing its file, not committed yet
        return len(list(path.glob("*.parquet"))) > 60
    return (path / "_delta_log" / f"{60:020d}.json").exists()  # committed, no checkpoint yet


@pytest.mark.faults
@pytest.mark.parametrize("point", ["start", "new file", "committed"])
def test_maintenance_killed_anywhere_changes_no_row_and_no_position(tmp_path, point):
    """SIGKILL at three moments of maintenance: the table is as before or compacted, never
    half-done; rows and app transactions unchanged; the next maintenance completes."""
    path = tmp_path / "big"
    app = "pgflow-cdc:orders:cdc:public.orders:slot"
    for i in range(60):
        frame = pl.DataFrame({"id": range(i * 20_000, (i + 1) * 20_000), "x": [i / 7] * 20_000})
        properties = CommitProperties(app_transactions=[Transaction(app, 1000 + i)])
        write_deltalake(str(path), frame, mode="append", commit_properties=properties)
    before = snapshot(path)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_MAINTENANCE, str(path)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"started"
    while child.poll() is None and not _reached(path, point):
        time.sleep(0.001)
    child.kill()
    assert child.wait() == -9, f"maintenance ended before it was killed at {point}"
    assert DeltaTable(str(path)).transaction_version(app) == 1059
    assert snapshot(path).equals(before)
    result = maintain(str(path), None, DeltaMaintenance())
    assert result.files_after == 1 and snapshot(path).equals(before)
    assert DeltaTable(str(path)).transaction_version(app) == 1059


def test_the_tables_own_longer_retention_is_respected(tmp_path):
    path = small_table(tmp_path, commits=3)
    retention = {"delta.deletedFileRetentionDuration": "interval 30 days"}
    DeltaTable(str(path)).alter.set_table_properties(retention)
    version = DeltaTable(str(path)).version()
    with pytest.raises(RetentionRefused, match=r"delta\.deletedFileRetentionDuration"):
        maintain(str(path), None, DeltaMaintenance())  # 7 days < the table's 30
    assert DeltaTable(str(path)).version() == version
    allowed = DeltaMaintenance(allow_short_retention=True)
    assert maintain(str(path), None, allowed).files_after == 1

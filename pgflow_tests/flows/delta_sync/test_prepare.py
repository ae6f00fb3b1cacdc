"""Before any row: a synced version is skipped by version alone, a dropped target is
re-created, deletes='cdf' needs the change data feed."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import write_deltalake

from pgflow.flows.delta_sync.errors import DeltaSyncError
from pgflow_tests.flows.delta_sync.support import (
    delta_rows,
    hashes,
    orders,
    sync,
    target_rows,
    write_files,
)
from pgflow_tests.pg import execute


def test_an_unchanged_rerun_is_skipped_by_version(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=2)
    first = sync(sink_uri, path)
    before = hashes(sink_uri)

    again = sync(sink_uri, path)

    assert again.skipped and again.plan == "skip"
    assert again.version == first.version == 1
    assert "already synced" in again.reason
    assert again.rows_read == again.rows_written == 0
    assert hashes(sink_uri) == before  # nothing touched, sync_ldts included
    # Only the version decides: a target whose clock says otherwise is not consulted.
    execute(sink_uri, "UPDATE gold.orders SET sync_ldts = '2000-01-01'")
    assert sync(sink_uri, path).skipped


def test_a_dropped_target_is_recreated_not_skipped(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 500), files=1)
    sync(sink_uri, path)
    execute(sink_uri, "DROP TABLE gold.orders")

    result = sync(sink_uri, path)

    assert result.created_target and result.rows_inserted == 500
    assert target_rows(sink_uri) == delta_rows(path)


def test_cdf_deletes_need_the_change_data_feed(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_deltalake(path, orders(0, 10))
    with pytest.raises(DeltaSyncError, match="enableChangeDataFeed"):
        sync(sink_uri, path, deletes="cdf")

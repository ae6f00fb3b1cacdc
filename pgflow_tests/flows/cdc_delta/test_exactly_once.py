"""Exactly once: a batch committed to Delta whose slot confirm never happened is skipped by
the next run (the table's app transaction holds its end LSN), never applied twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from pgflow.sinks.delta.cdc_state import delta_cdc_app_id
from pgflow.sources import replication_stream
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.flows.cdc_delta.conftest import (
    ORDERS,
    SOURCE,
    app_version,
    delta_frame,
    execute,
    fresh_load,
    run_delta,
)


class ConfirmLost(RuntimeError):
    pass


def test_a_commit_whose_confirm_was_lost_is_not_applied_twice(
    source_uri: str, slot: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    execute(
        source_uri,
        "INSERT INTO orders (id, status) VALUES (500, 'once');"
        "UPDATE orders SET amount = amount + 1 WHERE id <= 50; DELETE FROM orders WHERE id = 60",
    )

    def lost(self: object, lsn: int) -> None:
        raise ConfirmLost("killed between the Delta commit and the slot's confirm")

    monkeypatch.setattr(replication_stream.ReplicationStream, "confirm", lost)
    with pytest.raises(ConfirmLost):
        run_delta(source_uri, path, slot)
    monkeypatch.undo()
    committed = DeltaTable(str(path)).version()
    app = delta_cdc_app_id("orders", f"cdc:{SOURCE}:{slot}")
    stored = app_version(path, app)
    assert stored is not None

    again = run_delta(source_uri, path, slot)
    assert again.caught_up_slot
    assert again.batches == []  # the committed batch is skipped, not merged again
    assert again.delta_version == committed
    assert again.position_after is not None and lsn_to_int(again.position_after.value) == stored
    assert again.slot is not None and again.slot.confirmed_flush == stored
    got = delta_frame(path)
    assert got.equals(fresh_load(source_uri, SOURCE, tmp_path / "fresh").sort("id"))

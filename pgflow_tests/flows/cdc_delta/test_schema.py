"""Schema changes at the source: a new column is added by the batch's merge; one added with a
default existing rows read, a dropped and a retyped column stop the member with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from pgflow.flows.cdc.model import CdcApplyError
from pgflow_tests.flows.cdc_delta.conftest import (
    ORDERS,
    SOURCE,
    delta_frame,
    execute,
    fresh_load,
    run_delta,
)


def test_a_column_added_at_the_source_is_added_in_the_batch_commit(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    first = run_delta(source_uri, path, slot)
    execute(source_uri, "UPDATE orders SET status = 'old shape' WHERE id = 1")
    execute(source_uri, 'ALTER TABLE orders ADD COLUMN "New Col" text')
    execute(source_uri, """UPDATE orders SET "New Col" = 'v' || id WHERE id <= 3""")
    result = run_delta(source_uri, path, slot)
    assert result.changes == 4
    assert first.snapshot is not None
    assert result.delta_version == first.snapshot.version_after + 1  # schema and rows: one
    got = delta_frame(path)
    assert got["New Col"].to_list()[:4] == ["v1", "v2", "v3", None]
    assert got.equals(fresh_load(source_uri, SOURCE, tmp_path / "fresh").sort("id"))


@pytest.mark.parametrize(
    "added",
    [
        "region text NOT NULL DEFAULT 'eu'",  # stored once: atthasmissing
        "region text DEFAULT md5(random()::text)",  # volatile: the table is rewritten
    ],
)
def test_a_column_added_with_a_default_is_refused(
    source_uri: str, slot: str, tmp_path: Path, added: str
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    version = DeltaTable(str(path)).version()
    execute(source_uri, f"ALTER TABLE orders ADD COLUMN {added}")
    with pytest.raises(CdcApplyError, match=r"region .*default.*reset: true"):
        run_delta(source_uri, path, slot)
    assert DeltaTable(str(path)).version() == version


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE orders ALTER COLUMN note TYPE int USING length(note)",
        "ALTER TABLE orders DROP COLUMN note",
    ],
)
def test_a_retyped_or_dropped_column_stops_with_the_fix(
    source_uri: str, slot: str, tmp_path: Path, change: str
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    execute(source_uri, change)
    with pytest.raises(CdcApplyError, match=r"note .*reset: true"):
        run_delta(source_uri, path, slot)


def test_a_retype_under_pending_changes_stops_with_the_fix(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    execute(source_uri, "UPDATE orders SET note = 'x' WHERE id = 1")
    execute(source_uri, "ALTER TABLE orders ALTER COLUMN amount TYPE numeric(14,3)")
    execute(source_uri, "UPDATE orders SET amount = 1.125 WHERE id = 2")
    with pytest.raises(CdcApplyError, match=r"amount.*reset: true"):
        run_delta(source_uri, path, slot)

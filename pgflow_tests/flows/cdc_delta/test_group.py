"""A Postgres target and a Delta target in one group: one slot, one publication, each table's
changes in its own target, and the slot held back by the lower of the two positions."""

from __future__ import annotations

from pathlib import Path

from pgflow.config.model import TableName
from pgflow.flows.cdc.group_model import GroupMember
from pgflow.flows.cdc.model import DeltaCdcTarget
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.flows.cdc.conftest import connector
from pgflow_tests.flows.cdc.group_support import (
    MERGE,
    member,
    results,
    run_group,
    same_table,
    tables_sql,
)
from pgflow_tests.flows.cdc_delta.conftest import delta_frame, execute, fresh_load


def delta_member(name: str, source_uri: str, path: Path) -> GroupMember:
    return GroupMember(
        pipeline=name,
        table=TableName("public", name),
        target=DeltaCdcTarget(str(path), MERGE, numeric_as="string"),
        connect_sink=connector(source_uri),
        sink_id="delta",
    )


def test_postgres_and_delta_targets_share_one_slot(
    source_uri: str, sink_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, tables_sql("alpha", "beta"))
    path = tmp_path / "beta"
    group = [member("alpha", sink_uri), delta_member("beta", source_uri, path)]
    first = results(run_group(source_uri, slot, group))
    assert first["alpha"].snapshot is not None and first["beta"].snapshot is not None
    execute(
        source_uri,
        "UPDATE alpha SET label = 'a' WHERE id <= 5; UPDATE beta SET label = 'b' WHERE id <= 7;"
        "DELETE FROM beta WHERE id = 100; INSERT INTO alpha VALUES (101, 'new', 1, '{}')",
    )
    second = results(run_group(source_uri, slot, group))
    assert (second["alpha"].changes, second["beta"].changes) == (6, 8)
    assert same_table(source_uri, sink_uri, "alpha")
    beta = TableName("public", "beta")
    expected = fresh_load(source_uri, beta, tmp_path / "fresh", numeric_as="string")
    assert delta_frame(path).equals(expected.sort("id"))
    positions = [second[n].position_after for n in ("alpha", "beta")]
    assert all(p is not None for p in positions)
    slot_at = second["beta"].slot
    assert slot_at is not None and slot_at.confirmed_flush is not None
    assert slot_at.confirmed_flush <= min(lsn_to_int(p.value) for p in positions if p)

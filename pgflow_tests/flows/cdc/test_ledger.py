"""CDC into Postgres keeps the ledger (the target's row count in `_pgflow.pipeline_state`) in
each batch's transaction: the snapshot's rows, then inserted minus deleted per batch (a soft
delete keeps its row, a TRUNCATE empties). After each run it equals count(*), and no batch
needed a count to know it."""

from __future__ import annotations

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import ledger as ledger_module
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.state import read_target_rows
from pgflow_tests.flows.cdc.conftest import ORDERS, TARGET, run
from pgflow_tests.pg import execute, fetch

POLICIES = {
    name: StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy=name)  # type: ignore[arg-type]
    for name in ("delete_insert", "upsert", "shadow_swap")
}
# Every kind of change, several per key: a row updated twice, one inserted and deleted in the
# same batch, a key changed, deletes, and new rows.
CHANGES = [
    "UPDATE orders SET status = 'paid' WHERE id <= 20",
    "UPDATE orders SET amount = amount + 1 WHERE id <= 10",
    "INSERT INTO orders (id, status) SELECT g, 'new' FROM generate_series(1001, 1030) g",
    "DELETE FROM orders WHERE id BETWEEN 500 AND 539 OR id = 1030",
    "UPDATE orders SET id = 5000 WHERE id = 2",
    "INSERT INTO orders (id, status) VALUES (6000, 'gone soon')",
    "DELETE FROM orders WHERE id = 6000",
]


def counts(sink_uri: str) -> tuple[int | None, int]:
    with psycopg.connect(sink_uri) as conn:
        stored = read_target_rows(conn, TARGET)
    return stored, fetch(sink_uri, "SELECT count(*) FROM landing.orders")[0][0]


@pytest.mark.parametrize("deleted_column", [None, "deleted_at"], ids=["hard", "soft"])
@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_cdc_batches_keep_the_ledger_equal_to_count(
    source_uri: str,
    sink_uri: str,
    slot: str,
    policy: StrategySpec,
    deleted_column: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed: list[RowChange] = []
    settled = ledger_module.settled

    def spy(log: SqlLog, target: TableName, change: RowChange) -> RowChange:
        handed.append(change)
        return settled(log, target, change)

    monkeypatch.setattr(ledger_module, "settled", spy)
    execute(source_uri, ORDERS)
    soft = {"deleted_column": deleted_column} if deleted_column else {}
    run(source_uri, sink_uri, slot, policy, **soft)
    assert counts(sink_uri) == (1000, 1000)  # the snapshot's rows

    for statement in CHANGES:
        execute(source_uri, statement)
    result = run(source_uri, sink_uri, slot, policy, **soft)
    assert result.batches and all(change.known for change in handed)
    # Hard: 1000 + 29 new (1030 came and went) + the changed key's new row - 40 deleted - the
    # old key. Soft: every deleted row stays, stamped (1030 never reached the target).
    expected = 1030 if deleted_column else 989
    assert counts(sink_uri) == (expected, expected)

    execute(source_uri, "TRUNCATE orders; INSERT INTO orders (id, status) VALUES (1, 'again')")
    run(source_uri, sink_uri, slot, policy, **soft)
    assert all(change.known for change in handed)
    # Hard: emptied, then one row. Soft: every row stamped, row 1 written again.
    assert counts(sink_uri) == ((1030, 1030) if deleted_column else (1, 1))

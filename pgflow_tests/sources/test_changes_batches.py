"""Cutting one read of the slot into batches: whole transactions, the server's rule, and the
table's shape carried into every batch (a Relation is sent once per read)."""

from __future__ import annotations

from datetime import UTC, datetime

from pgflow.sources.changes import RelationSeen, TransactionEnd, Upsert, batches
from pgflow.sources.pgoutput_messages import Relation, RelationColumn

NOW = datetime(2024, 1, 1, tzinfo=UTC)
RELATION = RelationSeen(Relation(1, "public", "t", "d", (RelationColumn("id", 20, -1, True),)))


def transaction(n: int, rows: int, messages_before: int) -> list:
    # Begin + rows + Commit: the messages a one-table transaction takes.
    end = messages_before + rows + 2
    return [Upsert((str(n * 100 + i),), None) for i in range(rows)] + [
        TransactionEnd(end_lsn=n, commit_time=NOW, messages=end)
    ]


def test_batches_end_with_the_transaction_that_reaches_the_budget() -> None:
    events = [RELATION]
    messages = 1  # the Relation
    for n in range(1, 6):
        events += transaction(n, 3, messages)
        messages += 5
    cut = [(relation, list(batch)) for relation, batch in batches(iter(events), 10)]
    ends = [[e.end_lsn for e in batch if isinstance(e, TransactionEnd)] for _, batch in cut]
    # 1 + 5 + 5 = 11 >= 10 after two transactions, then 10 per two.
    assert ends == [[1, 2], [3, 4], [5]]
    assert cut[0][0] is None and cut[0][1][0] == RELATION
    assert all(relation == RELATION for relation, _ in cut[1:]), "the shape carries over"


def test_an_empty_read_is_one_empty_batch() -> None:
    cut = [(relation, list(batch)) for relation, batch in batches(iter([]), 10)]
    assert cut == [(None, [])]

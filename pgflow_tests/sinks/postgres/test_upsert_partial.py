"""Partial upsert (`update_columns`) on a real cluster: a conflict sets only the listed
columns, new keys get every column, and an unknown column stops the load before it writes."""

from __future__ import annotations

import pytest

from pgflow.bindings.metadata import load_metadata
from pgflow.config.model import StrategySpec
from pgflow.sinks.postgres.upsert import UnknownUpdateColumns
from pgflow_tests.sinks.postgres.modes_support import (
    KEY,
    count,
    ledger,
    load,
    setup,
    target_rows,
    xmins,
)


def partial(*columns: str) -> StrategySpec:
    return StrategySpec(
        mode="incremental_merge", unique_key=KEY, merge_policy="upsert", update_columns=columns
    )


@pytest.fixture
def tables(source_uri: str, sink_uri: str) -> tuple[str, str]:
    setup(source_uri, sink_uri)
    return source_uri, sink_uri


def test_a_conflict_sets_only_the_update_columns(tables) -> None:
    source_uri, sink_uri = tables
    before = xmins(sink_uri)
    result = load(source_uri, sink_uri, partial("Menge"))
    assert target_rows(sink_uri) == [
        # "Menge" taken; "Preis €", the key as stored (1.0, not 1.00) and "Notiz" kept
        ("eu", "1.0", "2024-03-01 12:00:00+00", 10, "0.10", "n1"),
        (None, "2.0", "2024-03-01 12:00:00+00", 20, "0.20", "n2"),
        ("us", "3.0", "2024-03-01 22:30:00+00", 30, "0.30", "n3"),
        ("us", "4.0", "2024-03-01 22:30:00+00", 40, "0.40", "n4"),
        ("ap", "5", "2024-03-03 00:00:00+00", 50, "5.00", "n5"),
        ("ap", "6", "2024-03-03 00:00:00+00", 60, "6.00", "-"),  # inserted: every column
        ("ap", "7", "2024-03-03 00:00:00+00", 70, "7.00", "n7"),
    ]
    assert result.rows == 4 + 1  # updated + inserted; key 5's "Menge" was equal already
    assert xmins(sink_uri)["5"] == before["5"]
    assert ledger(sink_uri) == count(sink_uri) == 7
    metadata = load_metadata(result, "warehouse")
    assert metadata["pgflow/batches"].value == 1
    assert metadata["pgflow/avg_batch_rows"].value == 5.0
    assert (
        metadata["pgflow/write_seconds"].value >= 0 and metadata["pgflow/rows_written"].value == 5
    )


def test_an_unknown_update_column_writes_nothing(tables) -> None:
    source_uri, sink_uri = tables
    rows = target_rows(sink_uri)
    with pytest.raises(UnknownUpdateColumns) as raised:
        load(source_uri, sink_uri, partial("Menge", "Notiz", "nope"))
    assert str(raised.value).startswith(
        "sink.strategy.update_columns: column(s) Notiz, nope are not among the columns loaded "
        "into Landing Zone.Preise Ünits (Région, Réf, Seit, Menge, Preis €, Geändert). Nothing "
        "was written."
    )
    assert target_rows(sink_uri) == rows

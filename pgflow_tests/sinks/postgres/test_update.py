"""mode update on a real cluster: staged rows update the target rows of their key (typed,
null-safe, composite, hostile names), unmatched keys are counted and never inserted, and
on_unmatched: fail writes nothing and keeps the stored position."""

from __future__ import annotations

import pytest

from pgflow.config.model import StrategySpec
from pgflow.flows.postgres_load import MissingTarget
from pgflow.sinks.postgres.keys import UniqueKeyMismatch
from pgflow.sinks.postgres.update import UnmatchedKeys
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.xmin import XminSource
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sinks.postgres.modes_support import (
    KEY,
    SOURCE,
    TARGET_SQL,
    count,
    ledger,
    load,
    position,
    setup,
    target_rows,
    xmins,
)

UPDATE = StrategySpec(mode="update", unique_key=KEY)
FAIL = StrategySpec(mode="update", unique_key=KEY, on_unmatched="fail")

# Keys 1-4 take the source's values as written (1.00 for 1.0, the instant unchanged); key 5 is
# equal already; key 7 (not in the source) and every "Notiz" keep theirs; key 6 is not added.
UPDATED = [
    ("eu", "1.00", "2024-03-01 12:00:00+00", 10, "1.50", "n1"),
    (None, "2.00", "2024-03-01 12:00:00+00", 20, "2.50", "n2"),
    ("us", "3.000", "2024-03-01 22:30:00+00", 30, "3.50", "n3"),
    ("us", "4", "2024-03-01 22:30:00+00", 40, "4.50", "n4"),
    ("ap", "5", "2024-03-03 00:00:00+00", 50, "5.00", "n5"),
    ("ap", "7", "2024-03-03 00:00:00+00", 70, "7.00", "n7"),
]


@pytest.fixture
def tables(source_uri: str, sink_uri: str) -> tuple[str, str]:
    setup(source_uri, sink_uri)
    return source_uri, sink_uri


def test_staged_rows_update_their_keys_and_unmatched_keys_are_only_counted(tables) -> None:
    source_uri, sink_uri = tables
    before = xmins(sink_uri)
    result = load(source_uri, sink_uri, UPDATE)
    assert target_rows(sink_uri) == UPDATED
    assert result.rows == 4  # key 5 matched, but equal: not rewritten
    assert result.strategy_metadata == {"unmatched_keys": 1}
    assert xmins(sink_uri)["5"] == before["5"] and xmins(sink_uri)["1"] != before["1"]
    assert any(s.startswith('UPDATE "Landing Zone"') for s in result.statements)
    assert ledger(sink_uri) == count(sink_uri) == 6  # an update never changes the count
    assert result.write_seconds > 0 and result.batches == 1

    again = load(source_uri, sink_uri, UPDATE)  # idempotent: nothing left to change
    assert again.rows == 0 and target_rows(sink_uri) == UPDATED


def test_only_the_staged_columns_are_set(tables) -> None:
    source_uri, sink_uri = tables
    load(source_uri, sink_uri, UPDATE, include_columns=[*KEY, "Menge"])
    prices = fetch(sink_uri, f'SELECT "Preis €"::text FROM {TARGET_SQL} ORDER BY "Réf"')
    assert [p for (p,) in prices] == ["0.10", "0.20", "0.30", "0.40", "5.00", "7.00"]
    menge = fetch(sink_uri, f'SELECT "Menge" FROM {TARGET_SQL} ORDER BY "Réf"')
    assert [m for (m,) in menge] == [10, 20, 30, 40, 50, 70]


def test_on_unmatched_fail_writes_nothing_and_names_the_keys(tables) -> None:
    source_uri, sink_uri = tables
    rows = target_rows(sink_uri)
    with pytest.raises(UnmatchedKeys) as raised:
        load(source_uri, sink_uri, FAIL)
    message = str(raised.value)
    assert "1 staged key(s) ((ap,6," in message and "on_unmatched is fail" in message
    assert "Nothing was written" in message and "on_unmatched: ignore" in message
    assert target_rows(sink_uri) == rows
    assert fetch(sink_uri, "SELECT count(*) FROM pg_tables WHERE schemaname = '_pgflow_staging'")[
        0
    ] == (0,)


def test_a_column_cursor_read_updates_and_stores_its_position_with_the_rows(tables) -> None:
    source_uri, sink_uri = tables
    cursor = lambda conn: ColumnCursorSource(conn, SOURCE, "Geändert")  # noqa: E731
    first = load(source_uri, sink_uri, UPDATE, cursor)
    assert target_rows(sink_uri) == UPDATED and first.position_after is not None
    stored = position(sink_uri)
    assert stored is not None and stored.value.startswith("2024-05-01")

    execute(
        source_uri,
        """UPDATE public."Preise Ünits" SET "Menge" = 99, "Geändert" = '2024-06-01+00'
           WHERE "Réf" IN (1, 6)""",
    )
    second = load(source_uri, sink_uri, UPDATE, cursor)
    assert second.rows_read == 2 and second.rows == 1
    assert second.strategy_metadata == {"unmatched_keys": 1}
    assert [r[3] for r in target_rows(sink_uri)] == [99, 20, 30, 40, 50, 70]
    after = position(sink_uri)
    assert after is not None and after.value.startswith("2024-06-01")


def test_on_unmatched_fail_keeps_the_stored_position(tables) -> None:
    source_uri, sink_uri = tables
    execute(source_uri, """DELETE FROM public."Preise Ünits" WHERE "Réf" = 6""")
    cursor = lambda conn: ColumnCursorSource(conn, SOURCE, "Geändert")  # noqa: E731
    load(source_uri, sink_uri, FAIL, cursor)
    stored, rows = position(sink_uri), target_rows(sink_uri)
    execute(
        source_uri,
        """INSERT INTO public."Preise Ünits" VALUES ('zz', 8, now(), 1, 1, '2024-07-01+00');
           UPDATE public."Preise Ünits" SET "Menge" = 0, "Geändert" = '2024-07-01+00'
           WHERE "Réf" = 1""",
    )
    with pytest.raises(UnmatchedKeys, match=r"1 staged key\(s\) \(\(zz,8,"):
        load(source_uri, sink_uri, FAIL, cursor)
    assert position(sink_uri) == stored and target_rows(sink_uri) == rows


def test_an_xmin_read_updates(tables) -> None:
    source_uri, sink_uri = tables
    result = load(source_uri, sink_uri, UPDATE, lambda conn: XminSource(conn, SOURCE))
    assert target_rows(sink_uri) == UPDATED and result.position_after is not None


def test_a_reset_re_reads_but_never_truncates(tables) -> None:
    source_uri, sink_uri = tables
    load(source_uri, sink_uri, UPDATE, reset=True)
    assert target_rows(sink_uri) == UPDATED


def test_a_missing_target_is_refused_and_not_created(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, 'CREATE TABLE public."Preise Ünits" (id int PRIMARY KEY)')
    with pytest.raises(MissingTarget) as raised:
        load(source_uri, sink_uri, StrategySpec(mode="update", unique_key=("id",)))
    assert str(raised.value) == (
        "mode update changes rows of an existing table, and the target Landing Zone.Preise "
        "Ünits does not exist. Nothing was written. Create or load it first (e.g. with mode "
        "incremental_merge), or correct sink.table"
    )
    assert fetch(sink_uri, "SELECT count(*) FROM pg_namespace WHERE nspname = 'Landing Zone'") == [
        (0,)
    ]


def test_a_partitioned_target_is_updated_across_partitions(source_uri: str, sink_uri: str) -> None:
    execute(
        source_uri,
        'CREATE TABLE public."Preise Ünits" (id int PRIMARY KEY, region text NOT NULL, v int);'
        " INSERT INTO public.\"Preise Ünits\" VALUES (1, 'eu', 10), (2, 'us', 20), (3, 'ap', 30)",
    )
    execute(
        sink_uri,
        'CREATE SCHEMA "Landing Zone"; CREATE TABLE "Landing Zone"."Preise Ünits"'
        " (id int, region text NOT NULL, v int, PRIMARY KEY (id, region))"
        " PARTITION BY LIST (region);"
        ' CREATE TABLE "Landing Zone".eu PARTITION OF "Landing Zone"."Preise Ünits"'
        " FOR VALUES IN ('eu');"
        ' CREATE TABLE "Landing Zone".us PARTITION OF "Landing Zone"."Preise Ünits"'
        " FOR VALUES IN ('us');"
        f" INSERT INTO {TARGET_SQL} VALUES (1, 'eu', 0), (2, 'us', 0)",
    )
    result = load(source_uri, sink_uri, StrategySpec(mode="update", unique_key=("id", "region")))
    assert fetch(sink_uri, f"SELECT id, v FROM {TARGET_SQL} ORDER BY id") == [(1, 10), (2, 20)]
    assert result.rows == 2 and result.strategy_metadata == {"unmatched_keys": 1}


def test_an_identity_always_column_is_refused_before_writing(
    source_uri: str, sink_uri: str
) -> None:
    execute(
        source_uri,
        'CREATE TABLE public."Preise Ünits" (k text PRIMARY KEY, n bigint, v int);'
        " INSERT INTO public.\"Preise Ünits\" VALUES ('a', 7, 1)",
    )
    execute(
        sink_uri,
        'CREATE SCHEMA "Landing Zone"; CREATE TABLE "Landing Zone"."Preise Ünits"'
        " (k text PRIMARY KEY, n bigint GENERATED ALWAYS AS IDENTITY, v int);"
        f" INSERT INTO {TARGET_SQL} (k, v) VALUES ('a', 0)",
    )
    with pytest.raises(UniqueKeyMismatch, match="mode update cannot set column\\(s\\) n of"):
        load(source_uri, sink_uri, StrategySpec(mode="update", unique_key=("k",)))
    assert fetch(sink_uri, f"SELECT v FROM {TARGET_SQL}") == [(0,)]
    only_v = load(
        source_uri,
        sink_uri,
        StrategySpec(mode="update", unique_key=("k",)),
        include_columns=["k", "v"],
    )
    assert only_v.rows == 1 and fetch(sink_uri, f"SELECT n, v FROM {TARGET_SQL}") == [(1, 1)]

"""mode delete on a real cluster: target rows whose key is staged go (typed, null-safe,
composite, hostile names, duplicates included), unmatched keys are counted, the ledger
subtracts the rows deleted."""

from __future__ import annotations

import pytest

from pgflow.config.model import StrategySpec
from pgflow.sources.column_cursor import ColumnCursorSource
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
)

DELETE = StrategySpec(mode="delete", unique_key=KEY)


@pytest.fixture
def tables(source_uri: str, sink_uri: str) -> tuple[str, str]:
    setup(source_uri, sink_uri)
    return source_uri, sink_uri


def test_staged_keys_delete_their_target_rows(tables) -> None:
    source_uri, sink_uri = tables
    load(source_uri, sink_uri, StrategySpec(mode="update", unique_key=KEY))  # a ledger to keep
    assert ledger(sink_uri) == 6
    # Only keys 2 (NULL region, 2.0 vs 2.00) and 6 (not in the target) are staged.
    execute(source_uri, """DELETE FROM public."Preise Ünits" WHERE "Réf" NOT IN (2, 6)""")
    result = load(source_uri, sink_uri, DELETE, include_columns=list(KEY))
    assert [r[1] for r in target_rows(sink_uri)] == ["1.00", "3.000", "4", "5", "7"]
    assert result.rows == 1
    assert result.strategy_metadata == {"rows_deleted": 1, "unmatched_keys": 1}
    assert ledger(sink_uri) == count(sink_uri) == 5
    assert result.copy_format in ("binary", "text") and result.rows_read == 2

    again = load(source_uri, sink_uri, DELETE, include_columns=list(KEY))  # deleting twice
    assert again.strategy_metadata == {"rows_deleted": 0, "unmatched_keys": 2}
    assert ledger(sink_uri) == count(sink_uri) == 5


def test_every_target_row_of_a_key_goes_and_repeated_staged_keys_are_harmless(
    source_uri: str, sink_uri: str
) -> None:
    execute(
        source_uri,
        'CREATE TABLE public."Preise Ünits" ("K" int, "V" text);'
        """INSERT INTO public."Preise Ünits" VALUES (1, 'a'), (1, 'b'), (NULL, 'c'), (9, 'd')""",
    )
    execute(
        sink_uri,
        'CREATE SCHEMA "Landing Zone"; CREATE TABLE "Landing Zone"."Preise Ünits" ("K" int,'
        ' "V" text, "Other" text);'
        """INSERT INTO "Landing Zone"."Preise Ünits" VALUES (1, 'x', 'o'), (1, 'y', 'o'),
           (NULL, 'z', 'o'), (2, 'w', 'o')""",
    )
    result = load(source_uri, sink_uri, StrategySpec(mode="delete", unique_key=("K",)))
    assert fetch(sink_uri, f'SELECT "K", "V" FROM {TARGET_SQL}') == [(2, "w")]
    assert result.strategy_metadata == {"rows_deleted": 3, "unmatched_keys": 1}
    assert result.duplicates_dropped == 0


def test_a_column_cursor_read_deletes_the_changed_keys(tables) -> None:
    source_uri, sink_uri = tables
    cursor = lambda conn: ColumnCursorSource(  # noqa: E731
        conn, SOURCE, "Geändert", include_columns=[*KEY, "Geändert"]
    )
    execute(source_uri, """UPDATE public."Preise Ünits" SET "Geändert" = '2024-01-01+00'""")
    first = load(source_uri, sink_uri, DELETE, cursor)
    assert len(target_rows(sink_uri)) == 1 and first.rows == 5  # key 7 only: 6 unmatched
    execute(
        sink_uri,
        f"""INSERT INTO {TARGET_SQL} VALUES ('eu', 1, '2024-03-01 12:00+00',
        1, 1, '2024-01-01+00', 'again')""",
    )
    assert load(source_uri, sink_uri, DELETE, cursor).rows == 0  # nothing read past the mark
    execute(
        source_uri,
        """UPDATE public."Preise Ünits" SET "Geändert" = '2024-08-01+00' WHERE "Réf" = 1""",
    )
    third = load(source_uri, sink_uri, DELETE, cursor)
    assert third.rows_read == 1 and third.rows == 1 and len(target_rows(sink_uri)) == 1
    stored = position(sink_uri)
    assert stored is not None and stored.value.startswith("2024-08-01")

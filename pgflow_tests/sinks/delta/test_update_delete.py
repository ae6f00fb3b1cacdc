"""mode update and mode delete into a real Delta table from a real Postgres source: hostile
names and types (unicode columns, unconstrained numeric, timestamptz, float NaN/Infinity),
only matched rows and read columns changed, unmatched keys counted or failing with nothing
committed, exactly the keyed rows deleted, cursor rounds, reruns that converge."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.flows.delta_load import MissingDeltaTable
from pgflow.sinks.delta import scan_delta_table, unmatched
from pgflow.sinks.delta.state import stored_position
from pgflow.sinks.postgres.keys import DuplicateKeys
from pgflow.sinks.postgres.update import UnmatchedKeys
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow.sources.xmin import XminSource
from pgflow_tests.sinks.delta.conftest import execute, last_commit, run_delta

KEY = ("Réf Nr",)
UPDATE = StrategySpec(mode="update", unique_key=KEY)
DELETE = StrategySpec(mode="delete", unique_key=KEY)
MERGE = StrategySpec(mode="incremental_merge", unique_key=KEY)

# The Delta table is loaded from `base`; `changes` and `gone` only say what changes.
SOURCE = """
CREATE TABLE base ("Réf Nr" bigint PRIMARY KEY, "Preis €" numeric, "quand" timestamptz,
    "Ratio" double precision, "Notiz" text, "geändert" timestamptz NOT NULL);
INSERT INTO base VALUES
    (1, 1.5, '2024-01-01 00:00+00', 0.5, 'n1', '2024-01-01 00:00+00'),
    (2, 12345678901234567890.123456789, '2024-01-02 00:00+00', 'NaN', 'n2', '2024-01-01 00:00+00'),
    (3, 0.000000001, NULL, '-Infinity', NULL, '2024-01-01 00:00+00'),
    (4, -7, '1999-12-31 23:59:59.999999+00', 4, 'n4', '2024-01-01 00:00+00'),
    (5, 5, '2024-01-05 00:00+00', 5, 'n5', '2024-01-01 00:00+00');
CREATE TABLE changes ("Réf Nr" bigint, "Preis €" numeric, "quand" timestamptz,
    "Ratio" double precision, "extra" text, "geändert" timestamptz NOT NULL);
INSERT INTO changes VALUES
    (1, 2.25, '2024-01-01 00:00+00', 0.5, 'x', '2024-02-01 00:00+00'),
    (2, 12345678901234567890.123456789, '2024-01-02 00:00+00', 'Infinity', 'x',
     '2024-02-01 00:00+00'),
    (3, 0.000000001, NULL, '-Infinity', 'x', '2024-02-01 00:00+00'),
    (99, 9, NULL, 9, 'x', '2024-02-01 00:00+00');
CREATE TABLE gone ("Réf Nr" bigint, "warum" text, "geändert" timestamptz NOT NULL);
INSERT INTO gone VALUES (1, 'a', '2024-02-01 00:00+00'), (1, 'again', '2024-02-01 00:00+00'),
    (3, 'b', '2024-02-01 00:00+00'), (42, 'never there', '2024-02-01 00:00+00');
"""
COLUMNS = ["Réf Nr", "Preis €", "quand", "Ratio", "Notiz", "geändert"]


@pytest.fixture
def lake(source_uri: str, tmp_path: Path) -> tuple[str, Path]:
    """The source and a Delta table holding `base` (version 0)."""
    execute(source_uri, SOURCE)
    path = tmp_path / "lake ü" / "produkte"
    run_delta(source_uri, path, MERGE, table="base", pipeline="base")
    return source_uri, path


def table_rows(path: Path) -> dict[int, dict]:
    frame = scan_delta_table(path).select(COLUMNS).collect()  # a path polars reads escaped
    frame = frame.with_columns(pl.col("Ratio").fill_nan(None).fill_null(pl.lit(-0.125)))
    return {row["Réf Nr"]: row for row in frame.to_dicts()}  # NaN as -0.125: comparable


def version(path: Path) -> int:
    return DeltaTable(str(path)).version()


def changes(**options):
    return lambda conn, table: PostgresTableSource(conn, table, **options)


def by_cursor(**options):
    return lambda conn, table: ColumnCursorSource(conn, table, "geändert", **options)


def test_update_changes_only_matched_rows_and_only_the_read_columns(lake) -> None:
    uri, path = lake
    before = table_rows(path)
    result = run_delta(uri, path, UPDATE, table="changes", pipeline="changes",
                       make_source=changes(include_columns=["Réf Nr", "Preis €", "Ratio",
                                                            "quand"]))  # fmt: skip

    after = table_rows(path)
    assert result.rows == 2  # 1 and 2 changed; 3 matched but equal: not rewritten
    assert result.strategy_metadata == {"unmatched_keys": 1}  # 99: counted, never inserted
    assert sorted(after) == [1, 2, 3, 4, 5]
    assert after[1]["Preis €"] == Decimal("2.25") and after[1]["Notiz"] == "n1"
    assert math.isinf(after[2]["Ratio"]) and after[2]["Ratio"] > 0
    assert after[2]["Preis €"] == Decimal("12345678901234567890.123456789")
    assert after[2]["geändert"] == before[2]["geändert"]  # not read: kept
    assert after[3] == before[3]
    assert (after[4], after[5]) == (before[4], before[5])  # not read: untouched
    assert [after[k]["Notiz"] for k in sorted(after)] == ["n1", "n2", None, "n4", "n5"]
    assert "extra" not in scan_delta_table(path).collect_schema()  # left out by include_columns
    assert (result.version_before, result.version_after) == (0, 1)
    assert last_commit(path)["pgflow.pipeline"] == "changes"


def test_update_on_unmatched_fail_commits_nothing_and_a_rerun_converges(lake) -> None:
    uri, path = lake
    fail = StrategySpec(mode="update", unique_key=KEY, on_unmatched="fail")
    before = table_rows(path)
    options = {"table": "changes", "pipeline": "changes", "make_source": by_cursor()}

    with pytest.raises(UnmatchedKeys) as failed:
        run_delta(uri, path, fail, **options)

    message = str(failed.value)
    assert f"mode update into the Delta table at {path}: 1 key(s) read (99) are not in" in message
    assert "on_unmatched is fail. Nothing was written" in message
    assert version(path) == 0 and table_rows(path) == before
    assert stored_position(str(path), "changes") is None

    execute(uri, 'DELETE FROM changes WHERE "Réf Nr" = 99')
    result = run_delta(uri, path, fail, **options)
    assert result.rows == 3 and result.strategy_metadata == {"unmatched_keys": 0}
    assert table_rows(path)[1]["Preis €"] == Decimal("2.25")
    assert stored_position(str(path), "changes") == result.position_after


def test_update_in_cursor_rounds(lake) -> None:
    uri, path = lake
    options = {"table": "changes", "pipeline": "changes", "make_source": by_cursor()}
    first = run_delta(uri, path, UPDATE, **options)
    assert first.rows_read == 4 and first.rows == 3  # 3: its cursor column changed

    execute(
        uri,
        """UPDATE changes SET "Preis €" = 3, "geändert" = '2024-03-01 00:00+00'
                    WHERE "Réf Nr" = 3""",
    )
    second = run_delta(uri, path, UPDATE, **options)

    assert second.position_before == first.position_after
    assert second.rows_read == 1 and second.rows == 1
    assert second.strategy_metadata == {"unmatched_keys": 0}
    assert table_rows(path)[3]["Preis €"] == Decimal(3)
    third = run_delta(uri, path, UPDATE, **options)  # nothing new: the position alone
    assert third.rows_read == 0 and third.version_after == second.version_after + 1
    assert len(table_rows(path)) == 5


def test_update_duplicate_keys_follow_the_duplicate_policy(lake) -> None:
    uri, path = lake
    execute(uri, """INSERT INTO changes VALUES (1, 100, NULL, 1, 'y', '2024-03-01 00:00+00')""")
    options = {"table": "changes", "pipeline": "changes", "make_source": by_cursor()}
    with pytest.raises(DuplicateKeys, match="repeats unique_key"):
        run_delta(uri, path, UPDATE, **options)
    assert version(path) == 0

    keep_last = StrategySpec(mode="update", unique_key=KEY, duplicate_policy="keep_last")
    run_delta(uri, path, keep_last, **options)
    assert table_rows(path)[1]["Preis €"] == Decimal(100)  # the largest cursor wins


def test_update_reset_re_reads_and_never_rebuilds(lake) -> None:
    uri, path = lake
    run_delta(uri, path, UPDATE, table="changes", pipeline="changes", make_source=by_cursor())
    execute(uri, """UPDATE changes SET "Ratio" = 42""")  # cursor unchanged: no new read
    result = run_delta(uri, path, UPDATE, table="changes", pipeline="changes",
                       make_source=by_cursor(), reset=True)  # fmt: skip
    rows = table_rows(path)
    assert result.rows == 3 and sorted(rows) == [1, 2, 3, 4, 5]
    assert [rows[k]["Ratio"] for k in (1, 2, 3, 4)] == [42, 42, 42, 4]
    assert rows[5]["Notiz"] == "n5"


def test_delete_removes_exactly_the_keyed_rows(lake) -> None:
    uri, path = lake
    before = table_rows(path)
    options = {"table": "gone", "pipeline": "gone"}
    result = run_delta(
        uri, path, DELETE, make_source=changes(include_columns=["Réf Nr"]), **options
    )

    assert result.strategy_metadata == {"rows_deleted": 2, "unmatched_keys": 1}
    assert result.rows == 2 and result.rows_read == 3  # distinct keys: 1 twice is one key
    assert table_rows(path) == {k: v for k, v in before.items() if k not in (1, 3)}
    assert (result.version_before, result.version_after) == (0, 1)

    again = run_delta(uri, path, DELETE, **options)  # every column read: only the key is used
    assert again.strategy_metadata == {"rows_deleted": 0, "unmatched_keys": 3}
    assert again.version_after == 2 and last_commit(path)["pgflow.run"] == 2
    assert sorted(table_rows(path)) == [2, 4, 5]


def test_delete_in_cursor_rounds(lake) -> None:
    uri, path = lake
    options = {"table": "gone", "pipeline": "gone", "make_source": by_cursor()}
    first = run_delta(uri, path, DELETE, **options)
    assert first.strategy_metadata["rows_deleted"] == 2
    execute(
        uri,
        """INSERT INTO gone VALUES (5, 'later', '2024-03-01 00:00+00'),
                                            (4, 'old news', '2024-01-15 00:00+00')""",
    )

    second = run_delta(uri, path, DELETE, **options)

    assert second.position_before == first.position_after
    assert second.strategy_metadata == {"rows_deleted": 1, "unmatched_keys": 0}
    assert sorted(table_rows(path)) == [2, 4]  # 4's row is older than the position


@pytest.mark.parametrize("strategy", [UPDATE, DELETE], ids=lambda s: s.mode)
def test_a_missing_table_is_refused_and_nothing_is_written(lake, strategy) -> None:
    uri, path = lake
    missing = path.parent / "nicht da"
    with pytest.raises(MissingDeltaTable) as refused:
        run_delta(uri, missing, strategy, table="changes", pipeline="changes")
    assert str(refused.value) == (
        f"mode {strategy.mode} changes rows of an existing Delta table, and there is none at "
        f"{missing}. Nothing was written. Create or load it first (e.g. with mode "
        "incremental_merge), or correct sink.path"
    )
    assert not missing.exists()


def test_update_with_a_key_the_table_lacks_is_refused(lake) -> None:
    uri, path = lake
    execute(uri, 'ALTER TABLE changes RENAME COLUMN "Réf Nr" TO "Nr"')
    strategy = StrategySpec(mode="update", unique_key=("Nr",))
    with pytest.raises(ValueError, match=r"has no column\(s\) Nr of unique_key"):
        run_delta(uri, path, strategy, table="changes", pipeline="changes")
    assert version(path) == 0


def test_composite_nullable_keys_of_timestamptz_and_numeric_match_typed(source_uri, tmp_path):
    """One instant written in two time zones is one key, 1.5 is 1.50, a NULL key matches."""
    execute(source_uri, """
        CREATE TABLE base (at timestamptz, amount numeric, "Wert ✓" text);
        INSERT INTO base VALUES ('2024-05-01 12:00+00', 1.5, 'a'), (NULL, 2, 'b'),
            ('2024-05-01 12:00+00', NULL, 'c'), ('2024-05-02 00:00+00', 3, 'd');
        CREATE TABLE changes (at timestamptz, amount numeric, "Wert ✓" text);
        INSERT INTO changes VALUES ('2024-05-01 14:00+02', 1.50, 'A'), (NULL, 2, 'B'),
            ('2024-05-01 12:00+00', 7, 'new');
        CREATE TABLE gone AS SELECT at, amount FROM changes;
    """)  # fmt: skip
    path = tmp_path / "t"
    key = ("at", "amount")
    run_delta(source_uri, path, StrategySpec(mode="full_refresh"), table="base", pipeline="b")

    updated = run_delta(source_uri, path, StrategySpec(mode="update", unique_key=key),
                        table="changes", pipeline="u", time_zone="Asia/Kolkata")  # fmt: skip
    values = scan_delta_table(path).sort("Wert ✓").collect().get_column("Wert ✓").to_list()
    assert updated.rows == 2 and values == ["A", "B", "c", "d"]
    assert updated.strategy_metadata == {"unmatched_keys": 1}

    deleted = run_delta(source_uri, path, StrategySpec(mode="delete", unique_key=key),
                        table="gone", pipeline="d")  # fmt: skip
    assert deleted.strategy_metadata == {"rows_deleted": 2, "unmatched_keys": 1}
    assert sorted(scan_delta_table(path).collect().get_column("Wert ✓").to_list()) == ["c", "d"]
    # The same key predicate in a merge: two nullable keys (DataFusion's AND binds tighter).
    merge = StrategySpec(mode="incremental_merge", unique_key=key)
    merged = run_delta(source_uri, path, merge, table="changes", pipeline="m")
    assert merged.metrics["num_target_rows_inserted"] == 3
    run_delta(source_uri, path, merge, table="changes", pipeline="m")
    assert scan_delta_table(path).collect().height == 5


def test_update_adds_a_column_the_source_gained(lake) -> None:
    uri, path = lake
    execute(uri, "ALTER TABLE changes ADD COLUMN \"Farbe\" text DEFAULT 'rot'")
    result = run_delta(uri, path, UPDATE, table="changes", pipeline="changes")
    colours = scan_delta_table(path).sort("Réf Nr").collect().get_column("Farbe").to_list()
    assert result.rows == 3 and colours == ["rot", "rot", "rot", None, None]

    execute(uri, "ALTER TABLE changes ADD COLUMN size int")
    strict = StrategySpec(mode="update", unique_key=KEY, on_schema_change="fail")
    with pytest.raises(ValueError, match=r"new column\(s\) size"):
        run_delta(uri, path, strict, table="changes", pipeline="changes")


@pytest.mark.parametrize(
    ("strategy", "table", "left"),
    [(UPDATE, "changes", [1, 2, 3, 4, 5]), (DELETE, "gone", [2, 4, 5])],
    ids=["update", "delete"],
)
def test_a_failure_before_the_commit_changes_nothing_and_the_rerun_converges(
    lake, monkeypatch, strategy, table, left
) -> None:
    uri, path = lake
    before = table_rows(path)
    real = ArrowRead.record_batches

    def streamed_then_failing(self):
        yield from real(self)  # every batch reaches the merge, which writes its files...
        raise RuntimeError("injected: the process dies before the commit")

    monkeypatch.setattr(ArrowRead, "record_batches", streamed_then_failing)
    with pytest.raises(RuntimeError, match="injected"):
        run_delta(uri, path, strategy, table=table, pipeline=table, make_source=by_cursor())
    monkeypatch.undo()
    assert version(path) == 0 and table_rows(path) == before
    assert stored_position(str(path), table) is None

    rerun = run_delta(uri, path, strategy, table=table, pipeline=table, make_source=by_cursor())
    assert rerun.version_after == 1 and sorted(table_rows(path)) == left
    assert stored_position(str(path), table) == rerun.position_after
    if strategy.mode == "update":
        assert table_rows(path)[1]["Preis €"] == Decimal("2.25")


def test_a_key_of_another_kind_in_the_table_is_refused(lake) -> None:
    uri, path = lake
    execute(
        uri,
        """ALTER TABLE gone ALTER COLUMN "Réf Nr" TYPE date
                    USING date '2024-01-01' + "Réf Nr"::int""",
    )
    with pytest.raises(ValueError) as refused:
        run_delta(uri, path, DELETE, table="gone", pipeline="gone")
    assert str(refused.value).startswith(
        "unique_key column(s) Réf Nr (Int64 in the table, Date read) are not of one kind"
    )
    assert version(path) == 0 and len(table_rows(path)) == 5


def test_unmatched_keys_are_counted_chunk_by_chunk(lake, monkeypatch) -> None:
    """A read of more keys than one chunk holds: the same count and sample, bounded memory."""
    uri, path = lake
    execute(
        uri, "INSERT INTO gone SELECT g, 'never', '2024-02-01' FROM generate_series(100, 120) g"
    )
    monkeypatch.setattr(unmatched, "KEY_CHUNK_ROWS", 2)  # 25 distinct keys: 13 chunks
    result = run_delta(uri, path, DELETE, table="gone", pipeline="gone")
    assert result.strategy_metadata == {"rows_deleted": 2, "unmatched_keys": 22}
    assert sorted(table_rows(path)) == [2, 4, 5]

    fail = StrategySpec(
        mode="update", unique_key=KEY, on_unmatched="fail", duplicate_policy="keep_last"
    )
    with pytest.raises(UnmatchedKeys, match=r": 24 key\(s\) read \(1, 3, 42, 100, 101, \.\.\.\)"):
        run_delta(uri, path, fail, table="gone", pipeline="gone")  # 1 and 3 deleted above
    assert version(path) == 1


def test_update_and_delete_with_xmin_reads(lake) -> None:
    uri, path = lake
    update = {"table": "changes", "pipeline": "changes", "make_source": XminSource}
    first = run_delta(uri, path, UPDATE, **update)
    assert first.rows_read == 4 and first.strategy_metadata == {"unmatched_keys": 1}
    execute(uri, """UPDATE changes SET "Preis €" = 8 WHERE "Réf Nr" = 2""")
    second = run_delta(uri, path, UPDATE, **update)
    assert (second.rows_read, second.rows) == (1, 1)
    assert table_rows(path)[2]["Preis €"] == Decimal(8)

    delete = {"table": "gone", "pipeline": "gone", "make_source": XminSource}
    assert run_delta(uri, path, DELETE, **delete).strategy_metadata["rows_deleted"] == 2
    execute(uri, """INSERT INTO gone VALUES (2, 'now', now())""")
    again = run_delta(uri, path, DELETE, **delete)
    assert again.rows_read == 1 and again.strategy_metadata == {
        "rows_deleted": 1,
        "unmatched_keys": 0,
    }
    assert sorted(table_rows(path)) == [4, 5]

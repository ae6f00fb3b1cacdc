"""A failed first Delta load leaves nothing the next run trips over: it succeeds from scratch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.sinks.delta.conftest import delta_rows, execute, fetch, run_delta

ORDERS = """
CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), note text);
INSERT INTO orders SELECT g, g * 1.5, 'n ' || g FROM generate_series(1, 300) g;
"""
MODES = {
    "full_refresh": StrategySpec(mode="full_refresh"),
    "append": StrategySpec(mode="incremental_append"),
    "merge": StrategySpec(mode="incremental_merge", unique_key=("id",)),
    "replace": StrategySpec(mode="replace", custom_predicate="id > 0"),
    "partition_replace": StrategySpec(mode="partition_replace", partition_column="note"),
}


def source_rows(source_uri: str) -> list[tuple]:
    return fetch(source_uri, "SELECT id, amount, note FROM orders ORDER BY id")


@pytest.mark.parametrize("when", ["before any batch", "after every batch"])
@pytest.mark.parametrize("strategy", MODES.values(), ids=MODES.keys())
def test_a_failed_first_load_leaves_nothing_and_the_next_run_succeeds(
    source_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    strategy: StrategySpec,
    when: str,
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "lake" / "orders"
    real = ArrowRead.record_batches

    def failing(self: ArrowRead):
        if when == "after every batch":
            yield from real(self)  # delta-rs writes the data files, then no commit
        raise RuntimeError("injected: the first write dies before its commit")

    monkeypatch.setattr(ArrowRead, "record_batches", failing)
    with pytest.raises(RuntimeError, match="injected"):
        run_delta(source_uri, path, strategy)
    monkeypatch.undo()
    assert not path.exists()  # the folder the load created is gone, orphan files with it
    assert (tmp_path / "lake").is_dir()  # its parent, there before, stays

    again = run_delta(source_uri, path, strategy)
    assert again.created_table and again.rows == 300
    assert delta_rows(path) == source_rows(source_uri)


def test_a_value_delta_cannot_hold_fails_the_first_load_and_leaves_no_folder(
    source_uri: str, tmp_path: Path
) -> None:
    execute(
        source_uri,
        "CREATE TABLE orders (id int, d timestamptz); INSERT INTO orders VALUES (1, 'infinity')",
    )
    path = tmp_path / "orders"
    with pytest.raises(Exception, match="column d"):
        run_delta(source_uri, path)
    assert not path.exists()


@pytest.mark.parametrize(
    "leftover",
    [
        {"_delta_log/00000000000000000000.json": b""},  # a commit killed while being written
        {"_delta_log/_commit_5f0c.json.tmp": b"{}", "part-0001.parquet": b"junk"},
        {"_delta_log/": None},  # an empty log folder
    ],
    ids=["empty commit file", "temporary commit and orphan data", "empty log"],
)
def test_a_folder_a_failed_first_load_left_is_reused(
    source_uri: str, tmp_path: Path, leftover: dict[str, bytes | None]
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    for name, content in leftover.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is not None:
            target.write_bytes(content)

    result = run_delta(source_uri, path, MODES["merge"])
    assert result.created_table and result.rows == 300 and result.version_after == 0
    assert delta_rows(path) == source_rows(source_uri)


def test_a_failed_load_of_an_existing_table_clears_nothing(
    source_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path)

    def failing(self: ArrowRead):
        raise RuntimeError("injected")
        yield

    monkeypatch.setattr(ArrowRead, "record_batches", failing)
    with pytest.raises(RuntimeError, match="injected"):
        run_delta(source_uri, path, MODES["merge"])
    assert DeltaTable(str(path)).version() == 0
    assert delta_rows(path) == source_rows(source_uri)  # the committed table, untouched


def test_a_deleted_delta_table_is_loaded_from_scratch(source_uri: str, tmp_path: Path) -> None:
    """The position lives in the Delta table's own log: deleting the table deletes it, so the
    next incremental run reads everything, never only the rows past the old cursor."""
    execute(source_uri, ORDERS + "; ALTER TABLE orders ADD COLUMN updated_at timestamptz")
    execute(
        source_uri, "UPDATE orders SET updated_at = '2024-01-01'::timestamptz + id * interval '1 s'"
    )
    path = tmp_path / "orders"
    strategy = MODES["merge"]
    run_delta(source_uri, path, strategy, make_source=by_cursor)
    execute(
        source_uri, "UPDATE orders SET note = 'changed', updated_at = '2030-01-01' WHERE id <= 10"
    )
    # The 10 changed rows; the row at the stored mark was applied and is skipped (cursor ties).
    assert run_delta(source_uri, path, strategy, make_source=by_cursor).rows_read == 10
    shutil.rmtree(path)

    again = run_delta(source_uri, path, strategy, make_source=by_cursor)
    assert again.created_table and again.read is not None and again.read.full
    assert again.rows == 300
    assert delta_rows(path) == fetch(
        source_uri, "SELECT id, amount, note, updated_at FROM orders ORDER BY id"
    )


def by_cursor(conn, table):  # type: ignore[no-untyped-def]
    return ColumnCursorSource(conn, table, "updated_at")

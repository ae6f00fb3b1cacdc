"""What a batch does to the Delta table: unchanged TOAST values kept, hard and soft deletes,
TRUNCATE applied or refused, each in one commit carrying the batch's end LSN."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.flows.cdc import delta_apply
from pgflow.flows.cdc.model import CdcApplyError
from pgflow.sources.delta_paths import scan_delta
from pgflow_tests.flows.cdc_delta.conftest import (
    ORDERS,
    SOURCE,
    delta_frame,
    execute,
    fresh_load,
    run_delta,
)

# 1 MB that pglz cannot shrink below the TOAST threshold: stored out of line, so an UPDATE
# that leaves it alone sends it as "unchanged".
BIG = "(SELECT string_agg(md5(g::text || {seed}), '') FROM generate_series(1, 32768) g)"
TOASTED = """
CREATE TABLE public.docs (id bigint PRIMARY KEY, status text, body text);
INSERT INTO public.docs VALUES (1, 'new', {big}), (3, 'new', {big});
"""


def _body(seed: int) -> str:
    return BIG.format(seed=seed)


def test_an_unchanged_toast_value_is_kept_never_null(
    source_uri: str, slot: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved: list[list[str]] = []
    original = delta_apply.resolve_unchanged

    def recording(ctx: Any, names: list[str], *args: Any, **kwargs: Any) -> None:
        resolved.append(names)
        original(ctx, names, *args, **kwargs)

    monkeypatch.setattr(delta_apply, "resolve_unchanged", recording)
    execute(source_uri, TOASTED.format(big=_body(1)))
    path = tmp_path / "docs"
    table = SOURCE.__class__("public", "docs")
    run_delta(source_uri, path, slot, table=table, pipeline="docs")
    execute(
        source_uri,
        f"UPDATE docs SET status = 'seen' WHERE id = 1;"  # body from the Delta row
        f"INSERT INTO docs VALUES (2, 'new', {_body(2)});"
        "UPDATE docs SET status = 'seen' WHERE id = 2;"  # body from the same batch
        "UPDATE docs SET status = 'done' WHERE id = 2;"
        "UPDATE docs SET body = 'small' WHERE id = 3;",  # no unchanged value in this row
    )
    result = run_delta(source_uri, path, slot, table=table, pipeline="docs")
    assert result.changes == 5 and len(result.batches) == 1
    assert resolved == [["body"]]  # the stream did leave the value out
    got = delta_frame(path)
    assert got["body"].null_count() == 0
    assert got["body"].str.len_bytes().to_list() == [1048576, 1048576, 5]
    assert got["status"].to_list() == ["seen", "done", "new"]
    assert got.equals(fresh_load(source_uri, table, tmp_path / "fresh").sort("id"))


def test_hard_and_soft_deletes(source_uri: str, slot: str, tmp_path: Path) -> None:
    execute(source_uri, ORDERS)
    hard, soft = tmp_path / "hard", tmp_path / "soft"
    slot_soft = slot + "_s"
    try:
        run_delta(source_uri, hard, slot)
        run_delta(source_uri, soft, slot_soft, deleted_column="deleted_at", pipeline="soft")
        execute(source_uri, "DELETE FROM orders WHERE id <= 20; DELETE FROM orders WHERE id = 999")
        execute(source_uri, "INSERT INTO orders (id, status) VALUES (5, 'back')")
        result = run_delta(source_uri, hard, slot)
        assert result.batches[0].rows_deleted == 19  # 5 came back in the same batch
        assert delta_frame(hard)["id"].to_list() == [5, *range(21, 201)]
        result = run_delta(
            source_uri, soft, slot_soft, deleted_column="deleted_at", pipeline="soft"
        )
        assert result.batches[0].rows_deleted == 19  # 5 came back
        rows = delta_frame(soft)
        assert rows.height == 200
        deleted = rows.filter(pl.col("deleted_at").is_not_null())["id"].to_list()
        assert deleted == [i for i in range(1, 21) if i != 5]
        assert rows.filter(pl.col("id") == 5)["status"].to_list() == ["back"]
    finally:
        from pgflow_tests.pg import drop_slots

        drop_slots(source_uri, slot_soft)


def test_truncate_empties_the_table_at_its_place(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    execute(
        source_uri,
        "UPDATE orders SET status = 'before' WHERE id = 1; TRUNCATE orders;"
        "INSERT INTO orders (id, status) VALUES (7, 'after'), (8, 'after');"
        "UPDATE orders SET status = 'later' WHERE id = 8",
    )
    result = run_delta(source_uri, path, slot)
    assert result.batches[0].truncates == 1
    assert delta_frame(path).select("id", "status").rows() == [(7, "after"), (8, "later")]


def test_soft_truncate_marks_the_rows_it_removed(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot, deleted_column="deleted_at")
    before = datetime.now(UTC)
    execute(source_uri, "TRUNCATE orders; INSERT INTO orders (id, status) VALUES (3, 'again')")
    after = datetime.now(UTC)
    run_delta(source_uri, path, slot, deleted_column="deleted_at")
    rows = delta_frame(path)
    assert rows.height == 200
    live = rows.filter(pl.col("deleted_at").is_null())
    assert live.select("id", "status").rows() == [(3, "again")]
    marked = rows.filter(pl.col("deleted_at").is_not_null())["deleted_at"].unique().to_list()
    assert len(marked) == 1 and before <= marked[0] <= after  # the truncate's commit time


def test_truncate_with_on_truncate_fail_stops_and_applies_nothing(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot, on_truncate="fail")
    version = DeltaTable(str(path)).version()
    execute(source_uri, "DELETE FROM orders WHERE id = 1; TRUNCATE orders")
    with pytest.raises(CdcApplyError, match=r"truncated.*on_truncate is fail"):
        run_delta(source_uri, path, slot, on_truncate="fail")
    assert DeltaTable(str(path)).version() == version
    assert delta_frame(path).height == 200


@pytest.mark.parametrize("folder", ["docs", "my lake ü/docs"])
def test_key_changes(source_uri: str, slot: str, tmp_path: Path, folder: str) -> None:
    """A key change moves the row with its unchanged TOAST value: from earlier in the batch,
    else from the Delta row of the old key (which the merge, on the new key, never sees),
    also at a path polars needs help with (sources/delta_paths.py)."""
    execute(source_uri, TOASTED.format(big=_body(1)))
    path = tmp_path / folder
    table = SOURCE.__class__("public", "docs")
    run_delta(source_uri, path, slot, table=table, pipeline="docs")
    execute(
        source_uri,
        f"INSERT INTO docs VALUES (4, 'new', {_body(4)});"
        "UPDATE docs SET id = 40 WHERE id = 4; UPDATE docs SET id = 41 WHERE id = 40;"
        "INSERT INTO docs VALUES (4, 'again', 'short');"
        "UPDATE docs SET status = 'kept' WHERE id = 3;"  # its body from the Delta row
        "UPDATE docs SET id = 10 WHERE id = 1;"  # its body only in the Delta row of 1
        "UPDATE docs SET id = 30, status = 'moved' WHERE id = 3;"  # twice in the batch
        "INSERT INTO docs VALUES (1, 'reused', 'tiny')",  # the old key comes back
    )
    result = run_delta(source_uri, path, slot, table=table, pipeline="docs")
    assert result.changes == 8
    got = scan_delta(path).collect().sort("id")
    assert got["id"].to_list() == [1, 4, 10, 30, 41]
    assert got["body"].null_count() == 0
    assert got["body"].str.len_bytes().to_list() == [4, 5, 1048576, 1048576, 1048576]
    assert got.equals(fresh_load(source_uri, table, tmp_path / "fresh").sort("id"))


def test_a_composite_key(source_uri: str, slot: str, tmp_path: Path) -> None:
    execute(
        source_uri,
        "CREATE TABLE public.pairs (a int, b text, body text, PRIMARY KEY (a, b));"
        f"INSERT INTO pairs VALUES (1, 'x', {_body(1)}), (1, 'y', 'short'), (2, 'x', 'two')",
    )
    path = tmp_path / "pairs"
    table = SOURCE.__class__("public", "pairs")
    strategy = StrategySpec(mode="incremental_merge", unique_key=("a", "b"))
    run_delta(source_uri, path, slot, strategy, table=table, pipeline="pairs")
    execute(
        source_uri,
        "UPDATE pairs SET b = 'z' WHERE (a, b) = (1, 'x');"  # moves its body from Delta
        "UPDATE pairs SET body = 'changed' WHERE (a, b) = (1, 'y');"
        "DELETE FROM pairs WHERE (a, b) = (2, 'x'); INSERT INTO pairs VALUES (2, 'y', 'new')",
    )
    run_delta(source_uri, path, slot, strategy, table=table, pipeline="pairs")
    got = pl.read_delta(str(path)).sort("a", "b")
    assert got.select("a", "b").rows() == [(1, "y"), (1, "z"), (2, "y")]
    assert got["body"].str.len_bytes().to_list() == [7, 1048576, 3]
    fresh = fresh_load(source_uri, table, tmp_path / "fresh", strategy)
    assert got.equals(fresh.sort("a", "b"))

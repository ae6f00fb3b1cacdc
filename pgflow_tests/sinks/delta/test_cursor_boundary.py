"""Cursor ties into Delta: the rows a keyed column-cursor load read at its high-water mark
travel in its commit, the next read skips them, and no row committed later at that value (a
new key, or a changed row that kept its value) is lost."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta import cursor_boundary
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.sinks.delta.conftest import execute, fetch, last_commit, run_delta

T1 = "2026-03-01 12:00:00+00"
T2 = "2026-03-01 12:00:05.123456+00"
ORDERS = f"""
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text, updated_at timestamptz);
INSERT INTO public.orders SELECT g, 'new', '{T1}' FROM generate_series(1001, 6000) g;
"""
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
ONLY_NEW = StrategySpec(mode="incremental_append", unique_key=("id",), only_new_rows=True)
APPEND = StrategySpec(mode="incremental_append")


def by_cursor(conn, table):
    return ColumnCursorSource(conn, table, "updated_at")


def same_as_source(source_uri: str, path: Path) -> bool:
    rows = fetch(source_uri, "SELECT id, status, updated_at FROM public.orders ORDER BY id")
    return pl.read_delta(str(path)).sort("id").rows() == rows


def committed_rows(path: Path) -> int:
    text = last_commit(path).get(cursor_boundary.BOUNDARY_KEY)
    return len(json.loads(text)["rows"]) if text else 0


def test_a_round_sharing_one_timestamp_is_read_once(source_uri: str, tmp_path: Path) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    load = partial(run_delta, source_uri, path, MERGE, make_source=by_cursor)
    first = load()
    assert (first.rows_read, first.boundary_rows, committed_rows(path)) == (5000, 5000, 5000)
    again = load()
    assert (again.rows_read, again.boundary_rows) == (0, 5000), "all 5,000 were applied"
    # One transaction: 1,000 updates and 3,000 inserts, all stamped with one now().
    execute(
        source_uri,
        f"UPDATE public.orders SET status = 'paid', updated_at = '{T2}' WHERE id % 5 = 0;"
        f"INSERT INTO public.orders SELECT g, 'new', '{T2}' FROM generate_series(6001, 9000) g",
    )
    second = load()
    assert (second.rows_read, second.boundary_rows) == (4000, 4000)
    # Later at the very same value: a key smaller than every stored key, and a changed row
    # that kept its cursor value.
    execute(source_uri, f"INSERT INTO public.orders VALUES (1, 'tie, smaller key', '{T2}')")
    execute(source_uri, "UPDATE public.orders SET status = 'changed' WHERE id IN (6001, 1005)")
    third = load()
    assert third.rows_read == 3
    assert third.boundary_rows == 4000 + 3  # the mark did not move: the skipped rows stay kept
    assert same_as_source(source_uri, path)
    assert load().rows_read == 0


def test_only_new_rows_skips_them_too_and_a_keyless_append_keeps_none(
    source_uri: str, tmp_path: Path
) -> None:
    execute(source_uri, ORDERS)
    only_new = partial(
        run_delta, source_uri, tmp_path / "only_new", ONLY_NEW, make_source=by_cursor
    )
    assert only_new().boundary_rows == 5000
    assert only_new().rows_read == 0
    # Two equal rows of a keyless table are two rows: nothing is kept, the mark is read again.
    keyless = partial(run_delta, source_uri, tmp_path / "keyless", APPEND, make_source=by_cursor)
    first = keyless()
    assert (first.boundary_rows, committed_rows(tmp_path / "keyless")) == (0, 0)
    assert keyless().rows_read == 5000


def test_above_the_cap_none_are_kept_and_the_merge_absorbs_the_reread(
    source_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cursor_boundary, "MAX_BOUNDARY_ROWS", 4999)
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    load = partial(run_delta, source_uri, path, MERGE, make_source=by_cursor)
    assert (load().boundary_rows, committed_rows(path)) == (0, 0)
    execute(source_uri, f"INSERT INTO public.orders VALUES (1, 'tie', '{T1}')")
    second = load()
    assert (second.rows_read, second.metrics["num_target_rows_inserted"]) == (5001, 1)
    assert same_as_source(source_uri, path)


def test_a_reset_reads_everything_whatever_is_kept(source_uri: str, tmp_path: Path) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    run_delta(source_uri, path, MERGE, make_source=by_cursor)
    execute(source_uri, "DELETE FROM public.orders WHERE id > 5990")
    reset = run_delta(source_uri, path, MERGE, make_source=by_cursor, reset=True)
    assert (reset.rows_read, reset.boundary_rows) == (4990, 4990)
    assert same_as_source(source_uri, path)

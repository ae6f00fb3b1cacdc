"""Cursor ties: rows at the stored high-water mark that a keyed load applied are skipped by
the next read, and no row committed later at that value (new key, or changed row) is lost."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import psycopg
import pytest

from pgflow.config.model import StrategySpec
from pgflow.sinks.postgres import cursor_boundary, staging
from pgflow.sources import column_cursor
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.pg import execute, table_text
from pgflow_tests.sources.conftest import MERGE, SOURCE, TARGET, incremental_load, stored_position

T1 = "2026-03-01 12:00:00+00"
T2 = "2026-03-01 12:00:05.123456+00"
ORDERS = f"""
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text, updated_at timestamptz);
CREATE INDEX ON public.orders (updated_at);
INSERT INTO public.orders SELECT g, 'new', '{T1}' FROM generate_series(1001, 6000) g;
"""


def cursor(conn: psycopg.Connection) -> ColumnCursorSource:
    return ColumnCursorSource(conn, SOURCE, "updated_at")


def same_as_source(source_uri: str, sink_uri: str, table: str = "orders") -> bool:
    return table_text(source_uri, f"public.{table}") == table_text(sink_uri, f"landing.{table}")


def stored_boundary(sink_uri: str) -> cursor_boundary.CursorBoundary | None:
    with psycopg.connect(sink_uri) as conn:
        return cursor_boundary.read_boundary(conn, TARGET)


def test_a_round_sharing_one_timestamp_is_read_once(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor)
    first = load()
    assert (first.rows_read, first.boundary_rows) == (5000, 5000)
    assert load().rows_read == 0, "all 5,000 rows at the mark were applied"
    # One transaction: 1,000 updates and 3,000 inserts, all stamped with one now().
    execute(
        source_uri,
        f"UPDATE public.orders SET status = 'paid', updated_at = '{T2}' WHERE id % 5 = 0;"
        f"INSERT INTO public.orders SELECT g, 'new', '{T2}' FROM generate_series(6001, 9000) g",
    )
    second = load()
    assert (second.rows_read, second.rows, second.boundary_rows) == (4000, 4000, 4000)
    assert second.position_after and second.position_after.value == T2
    # Later transactions at the very same value: a new key smaller than every stored key
    # (a (cursor, key) > (c0, k0) read would miss it), and a changed row that kept its value.
    execute(source_uri, f"INSERT INTO public.orders VALUES (1, 'tie, smaller key', '{T2}')")
    execute(source_uri, "UPDATE public.orders SET status = 'changed' WHERE id IN (6001, 1005)")
    third = load()
    assert (third.rows_read, third.rows) == (3, 3)
    # The mark did not move: the hashes of the rows skipped this time are kept too.
    assert third.boundary_rows == 4000 + 3
    assert same_as_source(source_uri, sink_uri)
    assert load().rows_read == 0


def test_a_row_at_the_mark_is_skipped_only_if_byte_for_byte_applied(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor)
    load()
    # Deleted and re-inserted with the same values: the target already has this row.
    execute(
        source_uri,
        f"DELETE FROM public.orders WHERE id = 1001;"
        f"INSERT INTO public.orders VALUES (1001, 'new', '{T1}')",
    )
    assert load().rows_read == 0
    # A value the target stores differently would hash differently and be read: NULL vs ''.
    execute(source_uri, "UPDATE public.orders SET status = NULL WHERE id = 1002")
    execute(source_uri, "UPDATE public.orders SET status = '' WHERE id = 1003")
    assert load().rows_read == 2
    assert same_as_source(source_uri, sink_uri)


COMPOSITE = """
CREATE TABLE public.orders (name text, at timestamptz, qty int, updated_at timestamptz,
                            PRIMARY KEY (name, at));
"""
HOSTILE_NAMES = ['a"b', "c,d", "'e'", "ü—😀", "(x)", "back\\slash", "", "NULL", "{1,2}"]


def test_composite_key_with_hostile_text_and_a_timestamptz_part(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, COMPOSITE)
    with psycopg.connect(source_uri, autocommit=True) as conn:
        for i, name in enumerate(HOSTILE_NAMES):
            conn.execute(
                "INSERT INTO public.orders VALUES (%s, '2026-01-01 00:00:00.000001+05:30'::timestamptz"
                " + %s * interval '1 microsecond', %s, %s)",
                (name, i, i, T1),
            )
    strategy = StrategySpec(mode="incremental_merge", unique_key=("name", "at"))
    load = partial(incremental_load, source_uri, sink_uri, cursor, strategy)
    assert load().boundary_rows == len(HOSTILE_NAMES)
    assert load().rows_read == 0
    execute(
        source_uri,
        f"INSERT INTO public.orders VALUES ('a\"b', '2026-01-01 00:00+05:30', 99, '{T1}');"
        "UPDATE public.orders SET qty = -1 WHERE name = 'ü—😀'",
    )
    again = load()
    assert (again.rows_read, again.rows) == (2, 2)
    assert table_text(source_uri, "public.orders", "t.name, t.at") == table_text(
        sink_uri, "landing.orders", "t.name, t.at"
    )


@pytest.mark.parametrize(
    ("kind", "value"),
    [("numeric(12,3)", "10.500"), ("date", "2026-01-10"), ("bigint", "10000000000")],
)
def test_numeric_and_date_cursors_skip_their_ties(
    source_uri: str, sink_uri: str, kind: str, value: str
) -> None:
    execute(
        source_uri,
        f"CREATE TABLE public.orders (id int PRIMARY KEY, status text, updated_at {kind});"
        f"INSERT INTO public.orders SELECT g, 'a', '{value}' FROM generate_series(10, 19) g",
    )
    load = partial(incremental_load, source_uri, sink_uri, cursor)
    assert load().boundary_rows == 10
    assert load().rows_read == 0
    execute(source_uri, f"INSERT INTO public.orders VALUES (1, 'tie', '{value}')")
    execute(source_uri, "UPDATE public.orders SET status = 'b' WHERE id = 19")
    assert load().rows_read == 2
    assert same_as_source(source_uri, sink_uri)
    assert stored_position(sink_uri).value == value  # type: ignore[union-attr]


def test_above_the_cap_no_rows_are_kept_and_the_mark_is_read_again(
    source_uri: str, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cursor_boundary, "MAX_BOUNDARY_ROWS", 4999)
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor)
    assert load().boundary_rows == 0 and stored_boundary(sink_uri) is None
    execute(source_uri, "UPDATE public.orders SET status = 'x' WHERE id = 1001")
    again = load()
    assert (again.rows_read, again.rows) == (5000, 5000)
    assert same_as_source(source_uri, sink_uri)
    monkeypatch.setattr(cursor_boundary, "MAX_BOUNDARY_ROWS", 5000)
    assert load().boundary_rows == 5000
    assert load().rows_read == 0


def test_with_lookback_only_the_rows_at_the_mark_are_skipped(
    source_uri: str, sink_uri: str
) -> None:
    early = f"INSERT INTO public.orders VALUES (1, 'early', '{T1}'::timestamptz - interval '1 min')"
    execute(source_uri, ORDERS + early)

    def make(conn: psycopg.Connection) -> ColumnCursorSource:
        return ColumnCursorSource(conn, SOURCE, "updated_at", lookback=timedelta(minutes=5))

    load = partial(incremental_load, source_uri, sink_uri, make)
    assert load().boundary_rows == 5000
    # The row a minute before the mark is inside the lookback window: read again on purpose;
    # the 5,000 at the mark are skipped.
    again = load()
    assert again.read and again.read.lower_bound == "2026-03-01 11:55:00+00"
    assert again.rows_read == 1


def test_a_keyless_append_keeps_no_boundary(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS.replace(" PRIMARY KEY", ""))
    append = StrategySpec(mode="incremental_append")
    load = partial(incremental_load, source_uri, sink_uri, cursor, append)
    assert load().boundary_rows == 0
    assert load().rows_read == 5000, "equal rows without a key are not known to be the same row"
    assert stored_boundary(sink_uri) is None


def test_a_state_from_before_boundaries_reads_the_mark_once_then_skips(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor)
    load()
    execute(sink_uri, "DROP TABLE _pgflow.cursor_boundary")  # as an older pgflow left it
    assert load().rows_read == 5000
    assert load().rows_read == 0


def test_a_failure_before_commit_keeps_the_old_position_and_the_old_rows(
    source_uri: str, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor)
    load()
    position, boundary = stored_position(sink_uri), stored_boundary(sink_uri)
    assert boundary is not None and len(boundary.rows) == 5000
    execute(
        source_uri,
        f"INSERT INTO public.orders SELECT g, 'new', '{T2}' FROM generate_series(1, 3) g",
    )

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected after the boundary was written, before commit")

    with monkeypatch.context() as patch:
        patch.setattr(staging, "drop_staging", fail)
        with pytest.raises(RuntimeError, match="injected"):
            load()
    assert (stored_position(sink_uri), stored_boundary(sink_uri)) == (position, boundary)
    retry = load()
    assert (retry.rows_read, retry.boundary_rows) == (3, 3)
    assert same_as_source(source_uri, sink_uri)


def test_a_reset_replaces_the_stored_rows(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor, MERGE)
    load()
    execute(source_uri, f"UPDATE public.orders SET updated_at = '{T2}' WHERE id = 1001")
    reset = load(reset=True)
    assert reset.read and reset.read.full and reset.boundary_rows == 1
    boundary = stored_boundary(sink_uri)
    assert boundary is not None and (boundary.value, len(boundary.rows)) == (T2, 1)


def test_a_server_without_hashed_not_in_reads_the_mark_again(
    source_uri: str, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(column_cursor, "HASHED_NOT_IN_SINCE", 10**9)  # as on PostgreSQL 14
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor)
    assert load().boundary_rows == 5000
    again = load()
    assert (again.rows_read, again.boundary_rows) == (5000, 5000)
    assert same_as_source(source_uri, sink_uri)

"""Column-cursor incremental reads against real clusters: what is read, what is stored."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import partial

import psycopg
import pytest

from pgflow.sources.base import SourceConfigError
from pgflow.sources.column_cursor import ColumnCursorSource, NullCursorRows
from pgflow_tests.pg import execute, fetch, table_text
from pgflow_tests.sources.conftest import SOURCE, incremental_load, stored_position

ORDERS = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text, updated_at timestamptz);
CREATE INDEX ON public.orders (updated_at);
INSERT INTO public.orders
SELECT g, 'new', '2026-01-01 00:00+00'::timestamptz + g * interval '1 minute'
FROM generate_series(1, 100) g;
"""


def cursor(**options: object):
    def make(conn: psycopg.Connection) -> ColumnCursorSource:
        return ColumnCursorSource(conn, SOURCE, **{"column": "updated_at", **options})  # type: ignore[arg-type]

    return make


def same_as_source(source_uri: str, sink_uri: str) -> bool:
    return table_text(source_uri, "public.orders") == table_text(sink_uri, "landing.orders")


def test_first_run_is_full_then_new_and_updated_rows_are_read(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor())
    first = load()
    assert first.read and first.read.full and first.read.reason == "first run: no stored position"
    assert (first.rows_read, first.position_after and first.position_after.value) == (
        100,
        "2026-01-01 01:40:00+00",
    )
    execute(
        source_uri,
        "INSERT INTO public.orders VALUES (101, 'new', '2026-01-01 02:00+00'),"
        " (102, 'new', '2026-01-01 02:01+00');"
        "UPDATE public.orders SET status = 'paid', updated_at = '2026-01-01 02:02+00'"
        " WHERE id IN (5, 6)",
    )
    second = load()
    assert second.read and not second.read.full
    assert second.read.lower_bound == "2026-01-01 01:40:00+00"
    # 2 inserted + 2 updated; row 100, exactly on the old high-water mark, was applied by the
    # first run and is skipped (cursor_boundary), not read again.
    assert (second.rows_read, second.rows) == (4, 4)
    assert second.position_after and second.position_after.value == "2026-01-01 02:02:00+00"
    assert same_as_source(source_uri, sink_uri)
    position = stored_position(sink_uri)
    assert position == second.position_after


def test_rows_sharing_the_boundary_value_are_not_lost(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor())
    high_water = "2026-01-01 01:40:00+00"
    load()
    # Committed after the first read, with the very value the read stopped at.
    execute(source_uri, "INSERT INTO public.orders VALUES (777, 'tie', %s)", (high_water,))
    # A `>` cursor (what many tools use) would not see it.
    strictly_after = "SELECT count(*) FROM public.orders WHERE updated_at > %s"
    assert fetch(source_uri, strictly_after, (high_water,)) == [(0,)]
    load()
    assert fetch(sink_uri, "SELECT status FROM landing.orders WHERE id = 777") == [("tie",)]
    assert same_as_source(source_uri, sink_uri)


@pytest.mark.parametrize("lookback", [None, timedelta(minutes=5)], ids=["no-lookback", "5min"])
def test_a_late_commit_with_an_older_cursor_needs_lookback(
    source_uri: str, sink_uri: str, lookback: timedelta | None
) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor(lookback=lookback))
    with psycopg.connect(source_uri) as late:
        # Stamped 03:00 but committed only after a row stamped 03:01 was read.
        late.execute("INSERT INTO public.orders VALUES (500, 'late', '2026-01-01 03:00+00')")
        execute(
            source_uri, "INSERT INTO public.orders VALUES (501, 'early', '2026-01-01 03:01+00')"
        )
        first = load()
        assert first.position_after and first.position_after.value == "2026-01-01 03:01:00+00"
    # `late` commits here, with a cursor value below the stored high-water mark.
    second = load()
    landed = fetch(sink_uri, "SELECT id FROM landing.orders WHERE id = 500")
    if lookback is None:
        assert landed == [], "without lookback the late row is skipped (the peers' bug)"
        assert not same_as_source(source_uri, sink_uri)
    else:
        assert second.read and second.read.lower_bound == "2026-01-01 02:56:00+00"
        assert landed == [(500,)]
        assert same_as_source(source_uri, sink_uri)


NULLS = "INSERT INTO public.orders VALUES (900, 'undated', NULL), (901, 'undated', NULL)"


def test_null_cursors_are_excluded_by_default(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS + NULLS)
    load = partial(incremental_load, source_uri, sink_uri, cursor())
    assert load().rows_read == 100
    assert load().rows_read == 0  # the row at the high-water mark was applied: skipped
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders WHERE id >= 900") == [(0,)]


def test_null_cursors_are_read_on_every_run_with_include(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS + NULLS)
    load = partial(incremental_load, source_uri, sink_uri, cursor(on_null_cursor="include"))
    assert load().rows_read == 102
    execute(source_uri, "UPDATE public.orders SET status = 'seen' WHERE id = 900")
    # Both NULL rows again (they have no cursor to skip them by); the boundary row is skipped.
    assert load().rows_read == 2
    assert same_as_source(source_uri, sink_uri)


def test_null_cursors_stop_the_load_with_fail(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS + NULLS)
    with pytest.raises(NullCursorRows, match=r"rows with a NULL 'updated_at'.*on_null_cursor"):
        incremental_load(source_uri, sink_uri, cursor(on_null_cursor="fail"))
    assert fetch(sink_uri, "SELECT to_regclass('landing.orders')") == [(None,)]
    assert stored_position(sink_uri) is None


CURSOR_TYPES = [
    # (type, first values, later value, lookback, expected lower bound after lookback)
    (
        "timestamp",
        "'2026-01-01 10:00'::timestamp",
        "'2026-01-01 10:30'",
        timedelta(minutes=10),
        "2026-01-01 09:50:00",
    ),
    (
        "timestamptz",
        "'2026-01-01 10:00+02'::timestamptz",
        "'2026-01-01 10:30+02'",
        timedelta(hours=1),
        "2026-01-01 07:00:00+00",
    ),
    ("date", "'2026-01-10'::date", "'2026-01-11'", timedelta(minutes=5), "2026-01-09"),
    ("integer", "10", "11", Decimal(3), "7"),
    ("bigint", "10000000000", "10000000001", Decimal("2.5"), "9999999997"),
    ("numeric(10,2)", "10.50", "10.75", Decimal("0.25"), "10.25"),
]


@pytest.mark.parametrize(
    ("kind", "first", "later", "lookback", "bound"),
    CURSOR_TYPES,
    ids=[c[0] for c in CURSOR_TYPES],
)
def test_every_cursor_type_reads_from_the_high_water_mark_minus_lookback(
    source_uri: str,
    sink_uri: str,
    kind: str,
    first: str,
    later: str,
    lookback: timedelta | Decimal,
    bound: str,
) -> None:
    execute(
        source_uri,
        f"CREATE TABLE public.orders (id int PRIMARY KEY, status text, updated_at {kind});"
        f"INSERT INTO public.orders VALUES (1, 'a', {first}), (2, 'b', NULL)",
    )
    load = partial(incremental_load, source_uri, sink_uri, cursor(lookback=lookback))
    assert load().rows_read == 1
    execute(source_uri, f"INSERT INTO public.orders VALUES (3, 'c', {later})")
    second = load()
    assert second.read and second.read.lower_bound == bound
    assert second.rows_read == 1  # the new row; the one at the old mark was applied
    assert fetch(sink_uri, "SELECT id FROM landing.orders ORDER BY id") == [(1,), (3,)]
    expected = fetch(source_uri, "SELECT max(updated_at)::text FROM public.orders")[0][0]
    assert second.position_after and second.position_after.value == expected


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        (
            {"column": "changed"},
            "source.options.incremental_column",
            "'changed' is not a column of public.orders; name one of: id, status, updated_at",
        ),
        (
            {"column": "status"},
            "source.options.incremental_column",
            "'status' is text; a cursor column must be one of date, timestamp, timestamptz, "
            "smallint, integer, bigint, numeric",
        ),
        (
            {"lookback": Decimal(5)},
            "source.options.lookback",
            "is a number, but 'updated_at' is timestamp with time zone; give a duration such as "
            "'5 minutes'",
        ),
    ],
)
def test_a_cursor_the_table_cannot_serve_fails_before_anything_is_written(
    source_uri: str, sink_uri: str, options: dict[str, object], field: str, message: str
) -> None:
    execute(source_uri, ORDERS)
    with pytest.raises(SourceConfigError) as exc:
        incremental_load(source_uri, sink_uri, cursor(**options))
    assert (exc.value.field, exc.value.detail) == (field, message)
    assert fetch(sink_uri, "SELECT to_regnamespace('landing'), to_regnamespace('_pgflow')") == [
        (None, None)
    ]


def test_a_duration_lookback_on_a_numeric_cursor_is_refused(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, "CREATE TABLE public.orders (id int PRIMARY KEY, seq bigint)")
    source = partial(ColumnCursorSource, column="seq", lookback=timedelta(minutes=1))
    with pytest.raises(SourceConfigError, match="is a duration, but 'seq' is bigint"):
        incremental_load(source_uri, sink_uri, lambda conn: source(conn, SOURCE))


def test_reset_reads_everything_and_rebuilds_the_target(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    load = partial(incremental_load, source_uri, sink_uri, cursor())
    load()
    # A cursor cannot see deletes; a reset is how a user brings the target back in line.
    execute(source_uri, "DELETE FROM public.orders WHERE id <= 10")
    assert load().rows_read == 0
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders") == [(100,)]
    reset = load(reset=True)
    assert reset.read and reset.read.full and reset.read.reason == "reset requested"
    assert reset.rows == 90
    assert same_as_source(source_uri, sink_uri)


def test_a_position_stored_for_another_column_is_not_reused(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS + ";ALTER TABLE public.orders ADD COLUMN created_at timestamptz;")
    incremental_load(source_uri, sink_uri, cursor())
    other = incremental_load(source_uri, sink_uri, cursor(column="created_at"))
    assert other.read and other.read.full
    assert other.read.reason == (
        "the stored position is for column:public.orders:updated_at (timestamp with time zone), "
        "this pipeline reads column:public.orders:created_at (timestamp with time zone)"
    )
    # created_at is NULL everywhere: nothing read, and the stale position is forgotten.
    assert other.rows_read == 0 and stored_position(sink_uri) is None

"""restrict_columns (source.options.include_columns) on tables read from a real catalog, and
the readers that apply it: only the listed columns are created and copied."""

from __future__ import annotations

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sources.base import SourceConfigError
from pgflow.sources.catalog import TableInfo, describe_table, restrict_columns
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow.sources.xmin import XminSource
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sources.conftest import SOURCE, MakeSource, incremental_load

ORDERS = """
CREATE TABLE public.orders (
    id bigint, region text, note text, total numeric(10, 2), updated_at timestamptz,
    PRIMARY KEY (region, id)
);
INSERT INTO public.orders
SELECT g, 'eu', repeat('n', g), g * 1.5, '2026-01-01 00:00+00'::timestamptz + g * interval '1 s'
FROM generate_series(1, 50) g;
"""


def orders(uri: str) -> TableInfo:
    execute(uri, ORDERS)
    with psycopg.connect(uri) as conn:
        return describe_table(conn, SOURCE)


def test_the_listed_columns_in_the_tables_order(fresh_db: str) -> None:
    info = orders(fresh_db)
    restricted = restrict_columns(info, ("total", "region", "id"))
    assert restricted.column_names == ("id", "region", "total")
    assert restricted.columns == tuple(
        c for c in info.columns if c.name != "note" and c.name != "updated_at"
    )
    assert restricted.primary_key == ("region", "id")
    assert (restricted.table, restricted.estimated_rows) == (info.table, info.estimated_rows)


def test_a_key_partly_left_out_is_no_key_of_the_read(fresh_db: str) -> None:
    restricted = restrict_columns(orders(fresh_db), ("id", "total"))
    assert (restricted.column_names, restricted.primary_key) == (("id", "total"), ())


def test_none_keeps_every_column(fresh_db: str) -> None:
    info = orders(fresh_db)
    assert restrict_columns(info, None) is info


def test_unknown_names_are_a_config_error_naming_the_field(fresh_db: str) -> None:
    with pytest.raises(SourceConfigError) as raised:
        restrict_columns(orders(fresh_db), ("id", "totl", "Region"), TableName("public", "v"))
    assert raised.value.field == "source.options.include_columns"
    assert raised.value.detail == (
        "'totl', 'Region' not found in public.v; its columns are: "
        "id, region, note, total, updated_at"
    )


MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
INCLUDED = ("id", "total", "updated_at")


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda c: PostgresTableSource(c, SOURCE, include_columns=INCLUDED), id="full"),
        pytest.param(
            lambda c: ColumnCursorSource(c, SOURCE, "updated_at", include_columns=INCLUDED),
            id="column",
        ),
        pytest.param(lambda c: XminSource(c, SOURCE, include_columns=INCLUDED), id="xmin"),
    ],
)
def test_each_reader_creates_and_copies_only_the_listed_columns(
    source_uri: str, sink_uri: str, make_source: MakeSource
) -> None:
    execute(source_uri, ORDERS)
    result = incremental_load(source_uri, sink_uri, make_source, MERGE)
    assert result.rows_read == 50
    assert result.target_info.column_names == INCLUDED
    copied = "SELECT id, total, updated_at FROM {} ORDER BY id"
    assert fetch(sink_uri, copied.format("landing.orders")) == fetch(
        source_uri, copied.format("public.orders")
    )


def test_a_listed_column_dropped_at_the_source_stops_the_read(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, ORDERS + "ALTER TABLE public.orders DROP COLUMN total;")
    with pytest.raises(SourceConfigError, match=r"'total' not found in public\.orders"):
        incremental_load(
            source_uri,
            sink_uri,
            lambda c: PostgresTableSource(c, SOURCE, include_columns=INCLUDED),
            MERGE,
        )
    assert fetch(sink_uri, "SELECT to_regclass('landing.orders')") == [(None,)]

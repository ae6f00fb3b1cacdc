"""The ledger: the target's row count kept in `_pgflow.pipeline_state`, written in each load's
transaction, equals count(*) after every strategy's full and incremental loads, and is
unknown (None: the caller counts) when the table under the target's name is another one."""

from __future__ import annotations

from functools import partial

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import load_table
from pgflow.sinks.postgres.state import read_position, read_target_rows
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.flows.test_postgres_load_incremental import CHANGES, KEYED, ORDERS
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sources.conftest import SOURCE, incremental_load

TARGET = TableName("landing", "orders")


def ledger(sink_uri: str, target: TableName = TARGET) -> int | None:
    with psycopg.connect(sink_uri) as conn:
        return read_target_rows(conn, target)


def counted(sink_uri: str, target: TableName = TARGET) -> int:
    quoted = psycopg.sql.Identifier(target.schema, target.name)
    with psycopg.connect(sink_uri) as conn:
        row = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(quoted)).fetchone()
    assert row is not None
    return int(row[0])


def full_load(source_uri: str, sink_uri: str, strategy: StrategySpec) -> None:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        load_table(dst, PostgresTableSource(src, SOURCE), TARGET, strategy, pipeline="orders")


def test_no_state_table_no_state_row_means_unknown(sink_uri: str) -> None:
    assert ledger(sink_uri) is None
    execute(sink_uri, "CREATE SCHEMA landing; CREATE TABLE landing.orders (id int)")
    assert ledger(sink_uri) is None


@pytest.mark.parametrize("method", ["truncate_insert", "exchange"])
def test_a_full_refresh_stores_the_exact_count_and_no_position(
    source_uri: str, sink_uri: str, method: str
) -> None:
    execute(source_uri, ORDERS)
    spec = StrategySpec(mode="full_refresh", method=method)  # type: ignore[arg-type]
    full_load(source_uri, sink_uri, spec)
    assert ledger(sink_uri) == counted(sink_uri) == 2000
    execute(source_uri, "DELETE FROM public.orders WHERE id % 3 = 0")
    full_load(source_uri, sink_uri, spec)
    assert ledger(sink_uri) == counted(sink_uri) == 1334
    with psycopg.connect(sink_uri) as conn:
        assert read_position(conn, TARGET) is None  # a full read stores no position


@pytest.mark.parametrize("strategy", KEYED.values(), ids=KEYED.keys())
def test_incremental_loads_keep_the_ledger_equal_to_count(
    source_uri: str, sink_uri: str, strategy: StrategySpec
) -> None:
    execute(source_uri, ORDERS)
    load = partial(
        incremental_load,
        source_uri,
        sink_uri,
        lambda conn: ColumnCursorSource(conn, SOURCE, "updated_at"),
        strategy,
    )
    load()
    assert ledger(sink_uri) == counted(sink_uri) == 2000
    execute(source_uri, CHANGES)
    load()
    assert ledger(sink_uri) == counted(sink_uri) == 2010


def test_a_target_replaced_by_another_table_has_no_ledger(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, ORDERS)
    full_load(source_uri, sink_uri, StrategySpec(mode="full_refresh"))
    assert ledger(sink_uri) == 2000
    execute(
        sink_uri,
        "DROP TABLE landing.orders; CREATE TABLE landing.orders (id bigint);"
        " INSERT INTO landing.orders SELECT generate_series(1, 7)",
    )
    assert ledger(sink_uri) is None
    assert fetch(sink_uri, "SELECT target_rows FROM _pgflow.pipeline_state") == [(2000,)]

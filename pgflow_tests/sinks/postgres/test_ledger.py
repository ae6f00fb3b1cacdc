"""The ledger: the target's row count kept in `_pgflow.pipeline_state`, written in each load's
transaction, equals count(*) after every strategy's full and incremental loads, and is
unknown (None: the caller counts) when the table under the target's name is another one."""

from __future__ import annotations

from functools import partial

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import load_table
from pgflow.sinks.postgres import ledger as ledger_module
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.state import read_position, read_target_rows
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.flows.test_postgres_load_incremental import CHANGES, KEYED, ORDERS
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sinks.postgres.partition_replace_support import (
    FEBRUARY,
    NEW_FEBRUARY,
    NEW_TWO_DAYS,
    make_source,
    make_target,
)
from pgflow_tests.sinks.postgres.partition_replace_support import TARGET as SALES
from pgflow_tests.sinks.postgres.partition_replace_support import load as partition_load
from pgflow_tests.sinks.postgres.partition_replace_support import strategy as partition_strategy
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


# --- every strategy, hostile runs ---------------------------------------------------------

# Hostile names on both sides; no key in the source, so a read can repeat one.
ITEMS = TableName("public", "Ït ems")
HOSTILE = TableName("Länd Ing", 'It"ems Tbl')
ITEMS_DDL = """
CREATE TABLE public."Ït ems" (id int, grp int, v text);
INSERT INTO public."Ït ems" SELECT g, g % 4, 'v' || g FROM generate_series(1, 100) g;
INSERT INTO public."Ït ems" SELECT g, g % 4, 'again' || g FROM generate_series(1, 5) g;
"""
# Deletes, updates (id 6 twice over: two rows of one key in the read), new keys, one repeated.
ITEMS_CHANGES = """
DELETE FROM public."Ït ems" WHERE id >= 90 OR id <= 5;
UPDATE public."Ït ems" SET v = v || '!' WHERE id <= 10;
INSERT INTO public."Ït ems" VALUES (6, 2, 'six again');
INSERT INTO public."Ït ems" SELECT g, g % 4, 'new' || g FROM generate_series(101, 120) g;
INSERT INTO public."Ït ems" VALUES (101, 1, 'new again');
"""
KEEP_LAST = {"unique_key": ("id",), "duplicate_policy": "keep_last"}
STRATEGIES = {
    "full_refresh": StrategySpec(mode="full_refresh"),
    "exchange": StrategySpec(mode="full_refresh", method="exchange"),
    "append": StrategySpec(mode="incremental_append"),
    "append_new": StrategySpec(mode="incremental_append", only_new_rows=True, **KEEP_LAST),
    "delete_insert": StrategySpec(mode="incremental_merge", **KEEP_LAST),
    "upsert": StrategySpec(mode="incremental_merge", merge_policy="upsert", **KEEP_LAST),
    "shadow_swap": StrategySpec(mode="incremental_merge", merge_policy="shadow_swap", **KEEP_LAST),
    "replace": StrategySpec(mode="replace", custom_predicate="grp = 1 OR v LIKE 'again%'"),
    "by_value": StrategySpec(mode="partition_replace", partition_column="grp"),
}


def hostile_load(source_uri: str, sink_uri: str, spec: StrategySpec, reset: bool = False) -> None:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = PostgresTableSource(src, ITEMS)
        load_table(dst, source, HOSTILE, spec, pipeline="items", reset=reset)


@pytest.fixture
def changes(monkeypatch: pytest.MonkeyPatch) -> list[RowChange]:
    """The change each load hands the ledger: known, or the load would count the target."""
    seen: list[RowChange] = []
    settled = ledger_module.settled

    def spy(log: SqlLog, target: TableName, change: RowChange) -> RowChange:
        seen.append(change)
        return settled(log, target, change)

    monkeypatch.setattr(ledger_module, "settled", spy)
    return seen


@pytest.mark.parametrize("spec", STRATEGIES.values(), ids=STRATEGIES.keys())
def test_every_strategy_keeps_the_ledger_equal_to_count_after_hostile_runs(
    source_uri: str, sink_uri: str, spec: StrategySpec, changes: list[RowChange]
) -> None:
    execute(source_uri, ITEMS_DDL)
    load = partial(hostile_load, source_uri, sink_uri, spec)
    seen = []
    for step in ("first", "changed", "again", "reset"):
        if step == "changed":
            execute(source_uri, ITEMS_CHANGES)
        load(reset=step == "reset")
        assert changes[-1].known, f"{step}: the strategy did not tell its change"
        assert ledger(sink_uri, HOSTILE) == counted(sink_uri, HOSTILE), step
        seen.append(counted(sink_uri, HOSTILE))
    # The first load and the reset hold the source (repeated keys once when keyed).
    assert (seen[0], seen[-1]) == ((100, 104) if spec.keyed else (105, 106))


@pytest.mark.parametrize("native_mode", ["auto", "disabled"])
def test_partition_replace_with_more_then_fewer_rows_keeps_the_ledger(
    source_uri: str, sink_uri: str, native_mode: str, changes: list[RowChange]
) -> None:
    more = NEW_FEBRUARY.replace("generate_series(1, 58)", "generate_series(1, 87)")
    make_source(source_uri, more)
    make_target(sink_uri)  # 182 rows no pgflow load has counted yet
    spec = partition_strategy(native_mode)
    partition_load(source_uri, sink_uri, spec)
    assert changes[-1].total is None and changes[-1].known  # the change was known...
    assert ledger(sink_uri, SALES) == counted(sink_uri, SALES) == 182 - 58 + 87  # ...counted once

    execute(source_uri, f"TRUNCATE public.sales; INSERT INTO public.sales {NEW_TWO_DAYS}")
    partition_load(source_uri, sink_uri, spec, FEBRUARY)
    assert changes[-1] == RowChange.added(5 - 87)  # February: 87 rows replaced by 5
    assert ledger(sink_uri, SALES) == counted(sink_uri, SALES) == 182 - 58 + 5


OLDER_STATE = """
CREATE SCHEMA _pgflow;
CREATE TABLE _pgflow.pipeline_state (
    target_schema text NOT NULL, target_table text NOT NULL, pipeline text NOT NULL,
    kind text NOT NULL, source text NOT NULL, value text NOT NULL, value_type text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (target_schema, target_table)
);
"""


def test_a_state_table_of_an_older_pgflow_gets_the_ledger(
    source_uri: str, sink_uri: str, changes: list[RowChange]
) -> None:
    """An older pgflow's state table (no identity, no count): read as unknown, given the
    columns by the next load, which counts the target once; the load after adds its change."""
    execute(source_uri, ORDERS)
    execute(sink_uri, OLDER_STATE)
    spec = KEYED["upsert"]
    load = partial(
        incremental_load,
        source_uri,
        sink_uri,
        lambda conn: ColumnCursorSource(conn, SOURCE, "updated_at"),
        spec,
    )
    load()
    execute(sink_uri, "ALTER TABLE _pgflow.pipeline_state DROP COLUMN target_rows")
    execute(sink_uri, "ALTER TABLE _pgflow.pipeline_state DROP COLUMN target_identity")
    assert ledger(sink_uri) is None  # the older table: no count, no identity
    execute(source_uri, CHANGES)
    load()
    assert ledger(sink_uri) == counted(sink_uri) == 2010
    execute(source_uri, "INSERT INTO public.orders (id) VALUES (3000)")
    load()
    assert changes[-1] == RowChange.added(1)
    assert ledger(sink_uri) == counted(sink_uri) == 2011


def test_a_full_refresh_state_row_is_no_position_for_an_incremental_load(
    source_uri: str, sink_uri: str
) -> None:
    """A spec changed from full_refresh to a cursor: its first run reads everything (the row a
    full_refresh stored holds no position), then continues from its own position."""
    execute(source_uri, ORDERS)
    full_load(source_uri, sink_uri, StrategySpec(mode="full_refresh"))
    cursor = lambda conn: ColumnCursorSource(conn, SOURCE, "updated_at")  # noqa: E731
    first = incremental_load(source_uri, sink_uri, cursor, KEYED["delete_insert"])
    assert first.read is not None and first.read.full and first.position_reset is None
    execute(source_uri, CHANGES)
    second = incremental_load(source_uri, sink_uri, cursor, KEYED["delete_insert"])
    assert second.read is not None and not second.read.full
    assert ledger(sink_uri) == counted(sink_uri) == 2010


def test_an_upsert_into_a_partitioned_target_tells_inserts_from_updates(
    source_uri: str, sink_uri: str, changes: list[RowChange]
) -> None:
    """`xmax = 0` tells an inserted row from an updated one on a partitioned target too."""
    execute(source_uri, ORDERS)
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.orders (id bigint PRIMARY KEY, status text,"
        " amount numeric(10,2), updated_at timestamptz NOT NULL) PARTITION BY HASH (id);"
        " CREATE TABLE landing.orders_0 PARTITION OF landing.orders"
        " FOR VALUES WITH (MODULUS 2, REMAINDER 0);"
        " CREATE TABLE landing.orders_1 PARTITION OF landing.orders"
        " FOR VALUES WITH (MODULUS 2, REMAINDER 1);"
        " INSERT INTO landing.orders SELECT g, 'old', 0, now() FROM generate_series(1, 10) g",
    )
    cursor = lambda conn: ColumnCursorSource(conn, SOURCE, "updated_at")  # noqa: E731
    incremental_load(source_uri, sink_uri, cursor, KEYED["upsert"])
    assert changes[-1] == RowChange.added(1990)  # 10 keys were there: updated, not added
    assert ledger(sink_uri) == counted(sink_uri) == 2000
    execute(source_uri, CHANGES)
    incremental_load(source_uri, sink_uri, cursor, KEYED["upsert"])
    assert changes[-1] == RowChange.added(10)  # 40 updated, 10 new
    assert ledger(sink_uri) == counted(sink_uri) == 2010

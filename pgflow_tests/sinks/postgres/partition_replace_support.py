"""Shared set-up for the partition_replace tests: the sales target, the loads, what they did.

The target is built by each test (pgflow's first load creates plain tables): sales by day,
RANGE-partitioned by month over Jan-Mar 2024, two old rows per day. Before each load `expect`
builds the expected target in the sink in plain SQL, independently of the strategy: the old
rows outside what is replaced, plus the new rows from the same generator the source is filled
with. After the load the target must equal it row for row.
"""

from __future__ import annotations

import datetime
import re

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.sinks.postgres.conftest import execute, fetch, table_text

SOURCE = TableName("public", "sales")
TARGET = TableName("landing", "sales")
ORDER = "business_date, id"
COLUMNS = "id int NOT NULL, business_date date, store text, store_id int, amount numeric(10,2)"

PARTITIONED_TARGET = f"""
CREATE SCHEMA landing;
CREATE TABLE landing.stores (id int PRIMARY KEY);
INSERT INTO landing.stores VALUES (1), (2);
CREATE TABLE landing.sales ({COLUMNS}, PRIMARY KEY (business_date, id))
  PARTITION BY RANGE (business_date);
CREATE TABLE landing.sales_2024_01 PARTITION OF landing.sales
  FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE landing.sales_2024_02 PARTITION OF landing.sales
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE landing.sales_2024_03 PARTITION OF landing.sales
  FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
"""
PLAIN_TARGET = f"CREATE SCHEMA landing; CREATE TABLE landing.sales ({COLUMNS});"
# Two old rows per day, 2024-01-01 .. 2024-03-31 (91 days).
OLD_ROWS = """
INSERT INTO landing.sales SELECT g, '2024-01-01'::date + g % 91, 'old', 2, g
FROM generate_series(1, 182) g
"""
# New rows on every day of February (2024 has 29): a complete replacement of those days.
NEW_FEBRUARY = """
SELECT 1000 + g, '2024-02-01'::date + g % 29, 'new', 1, (g * 1.5)::numeric(10,2)
FROM generate_series(1, 58) g
"""
# New rows on two days of February only.
NEW_TWO_DAYS = """
SELECT 2000 + g, '2024-02-10'::date + g % 2, 'new', 1, g::numeric(10,2)
FROM generate_series(1, 5) g
"""
FEBRUARY_TO_APRIL = PartitionSlice(datetime.date(2024, 2, 1), datetime.date(2024, 4, 1))
FEBRUARY = PartitionSlice(datetime.date(2024, 2, 1), datetime.date(2024, 3, 1))


def strategy(native_mode: str = "auto", column: str = "business_date") -> StrategySpec:
    return StrategySpec(
        mode="partition_replace",
        partition_column=column,
        native_mode=native_mode,  # type: ignore[arg-type]
    )


def make_source(source_uri: str, rows: str) -> None:
    execute(source_uri, f"CREATE TABLE public.sales ({COLUMNS}); INSERT INTO public.sales {rows}")


def make_target(sink_uri: str, ddl: str = PARTITIONED_TARGET) -> None:
    execute(sink_uri, ddl)
    execute(sink_uri, OLD_ROWS)


def expect(sink_uri: str, replaced: str, new_rows: str) -> None:
    """public.expected := target rows for which `replaced` is not true, plus the new rows."""
    execute(
        sink_uri,
        f"CREATE TABLE public.expected AS SELECT * FROM landing.sales t WHERE ({replaced})"
        f" IS NOT TRUE; INSERT INTO public.expected {new_rows}",
    )


def staged_dates(new_rows: str) -> str:
    """`replaced` for a load without a slice: the dates the new rows carry, NULL included."""
    return (
        f"EXISTS (SELECT FROM ({new_rows}) AS n(id, d, s, si, a)"
        f" WHERE n.d IS NOT DISTINCT FROM t.business_date)"
    )


def assert_target_is_expected(sink_uri: str) -> None:
    assert table_text(sink_uri, "landing.sales", ORDER) == table_text(
        sink_uri, "public.expected", ORDER
    )


def load(
    source_uri: str,
    sink_uri: str,
    spec: StrategySpec,
    partition_slice: PartitionSlice | None = None,
    notices: list[str] | None = None,
) -> LoadResult:
    """load_table as the IO manager calls it; `notices` collects the sink's DEBUG1 messages."""
    options = "-c client_min_messages=debug1" if notices is not None else ""
    with (
        psycopg.connect(source_uri) as src,
        psycopg.connect(sink_uri, autocommit=True, options=options) as dst,
    ):
        if notices is not None:
            dst.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        source = PostgresTableSource(src, SOURCE)
        return load_table(dst, source, TARGET, spec, partition_slice=partition_slice)


def load_named(
    source_uri: str, sink_uri: str, source: TableName, target: TableName, spec: StrategySpec
) -> LoadResult:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        return load_table(dst, PostgresTableSource(src, source), target, spec)


def swapped(result: LoadResult) -> list[str]:
    return [s for s in result.statements if "DETACH PARTITION" in s or "ATTACH PARTITION" in s]


def swap_steps(result: LoadResult) -> list[tuple[str, str]]:
    """(DETACH|ATTACH, partition) in order; the random tag of new partitions shown as *."""
    steps = []
    for statement in swapped(result):
        match = re.search(r'(DETACH|ATTACH) PARTITION "landing"\."([^"]+)"', statement)
        assert match is not None, statement
        steps.append((match[1], re.sub(r"_new_[0-9a-f]{8}$", "_new_*", match[2])))
    return steps


def deletes(result: LoadResult) -> list[str]:
    return [s for s in result.statements if s.startswith("DELETE FROM")]


def partition_oids(sink_uri: str) -> list[tuple]:
    return fetch(
        sink_uri,
        "SELECT inhrelid::regclass::text, inhrelid FROM pg_inherits"
        " WHERE inhparent = 'landing.sales'::regclass ORDER BY 1",
    )


def leftovers(sink_uri: str) -> list[tuple]:
    return fetch(
        sink_uri,
        "SELECT relname FROM pg_class WHERE relname LIKE '%pgflow%'"
        " UNION ALL SELECT conname FROM pg_constraint WHERE conname LIKE 'pgflow%'",
    )


def ensure_roles(sink_uri: str) -> None:
    execute(
        sink_uri,
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_reader') THEN
            CREATE ROLE pgflow_reader; END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgflow_clerk') THEN
            CREATE ROLE pgflow_clerk; END IF;
        END $$;
    """,
    )

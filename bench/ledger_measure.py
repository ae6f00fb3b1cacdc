"""What `dagster/row_count` costs an incremental run, with the ledger and with count(*).

    .venv/bin/python -m bench.ledger_measure [rows]   # default 2,000,000

One throwaway cluster (source and sink databases), the bench's orders table. A full load,
then 3 rounds of: 1% of the rows updated and 1% inserted at the source, an incremental upsert
load (cursor on updated_at), then the metadata's row count the way the run takes it now
(`postgres_counts`: the ledger) and the way it took it before (a count(*) of the target).
Also the upsert statement itself with and without the ledger's count of its inserts
(`RETURNING xmax = 0`), each on the same staged rows in a transaction rolled back.
Prints medians of the 3 rounds.
"""

from __future__ import annotations

import statistics
import sys
import time
from functools import partial
from typing import Any

import psycopg

from bench.common import ORDERS_FILL, change_rows, create_orders, throwaway_cluster
from pgflow.bindings.row_counts import postgres_counts
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import load_table
from pgflow.sinks.postgres.inspect import row_count
from pgflow.sources.catalog import describe_table
from pgflow.sources.column_cursor import ColumnCursorSource

SOURCE, TARGET = TableName("public", "orders"), TableName("landing", "orders")
UPSERT = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert")
COLUMNS = "customer_id, status, amount, note, tags, attrs, created_at, updated_at, paid, ref"
PLAIN = (
    "INSERT INTO landing.orders AS t SELECT * FROM changed"
    " ON CONFLICT (id) DO UPDATE SET ({c}) = ROW({e})"
    " WHERE ROW(t.*)::record *<> ROW(excluded.*)::record"
).format(c=COLUMNS, e=", ".join(f"excluded.{c.strip()}" for c in COLUMNS.split(",")))
COUNTED = (
    f"WITH w AS ({PLAIN} RETURNING t.xmax = 0 AS inserted)"
    " SELECT count(*), count(*) FILTER (WHERE inserted) FROM w"
)


def timed(figures: dict[str, list[float]], name: str, action: Any, *args: Any) -> Any:
    """Run action(*args), add its seconds to figures[name]; its result."""
    started = time.perf_counter()
    result = action(*args)
    figures.setdefault(name, []).append(time.perf_counter() - started)
    return result


def main(rows: int) -> None:
    with throwaway_cluster(["src", "sink"]) as info:
        src_uri, sink_uri = info.uri("src"), info.uri("sink")
        create_orders(src_uri, rows)
        with psycopg.connect(src_uri) as s, psycopg.connect(sink_uri, autocommit=True) as d:
            load_table(d, ColumnCursorSource(s, SOURCE, "updated_at"), TARGET, UPSERT, pipeline="o")
        figures: dict[str, list[float]] = {}
        for round_ in range(1, 4):
            change_rows(src_uri, round_)
            with psycopg.connect(src_uri, autocommit=True) as conn:
                lo = rows + (round_ - 1) * rows // 100 + 1
                conn.execute(
                    ORDERS_FILL.format(table="orders"), {"lo": lo, "hi": lo + rows // 100 - 1}
                )
            with psycopg.connect(src_uri) as s, psycopg.connect(sink_uri, autocommit=True) as d:
                source = ColumnCursorSource(s, SOURCE, "updated_at")
                timed(figures, "load", partial(load_table, pipeline="o"), d, source, TARGET, UPSERT)
            with psycopg.connect(sink_uri, autocommit=True) as conn:
                info_ = describe_table(conn, TARGET)
                counts = timed(figures, "row_count from the ledger", postgres_counts, conn, info_)
                assert counts["pgflow/row_count_from"].value == "ledger"
                counted = timed(figures, "row_count by count(*) (before)", row_count, conn, TARGET)
                assert counts["dagster/row_count"].value == counted
                _upserts(conn, rows, round_, figures)
        print(f"{rows:,} rows, medians of 3 rounds (1% updated + 1% inserted per round):")
        for name, values in figures.items():
            print(
                f"  {name:<40} {statistics.median(values):.3f} s  {[round(v, 3) for v in values]}"
            )


def _upserts(
    conn: psycopg.Connection, rows: int, round_: int, figures: dict[str, list[float]]
) -> None:
    """The upsert with and without the count of its inserts, on the same 2% of rows."""
    conn.execute("DROP TABLE IF EXISTS changed")
    conn.execute("CREATE UNLOGGED TABLE changed (LIKE landing.orders)")
    conn.execute(
        "INSERT INTO changed SELECT * FROM landing.orders WHERE id %% 100 = %s", (round_ + 10,)
    )
    conn.execute(
        ORDERS_FILL.format(table="changed"), {"lo": rows * 2, "hi": rows * 2 + rows // 100}
    )
    conn.execute("UPDATE changed SET amount = amount + 1")
    conn.execute("ANALYZE changed")
    variants = [("upsert, plain", PLAIN), ("upsert, counting inserts", COUNTED)]
    for name, statement in variants if round_ % 2 else variants[::-1]:  # alternate who goes first
        with conn.transaction(force_rollback=True):
            timed(figures, name, conn.execute, statement)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)

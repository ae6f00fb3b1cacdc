"""Rows read per incremental round when a whole round shares one cursor value (one now()).

    .venv/bin/python -m bench.cursor_ties [rows] [repeats]

The orders table (bench.common) with `rows` rows; each round, in ONE transaction, updates
1% of the rows and inserts 1% more, all stamped with the transaction's now(). pgflow loads it
with incremental_merge by updated_at (load_table, no Dagster). Printed per round: rows read,
rows applied, rows kept at the mark, the load's seconds; medians over `repeats` fresh clusters.
Run with PYTHONPATH at an older pgflow tree to measure the `>=` re-read it had.
"""

from __future__ import annotations

import statistics
import sys

import psycopg

from bench.common import create_orders, throwaway_cluster
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sources.column_cursor import ColumnCursorSource

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
ROUNDS = 3  # round 0 is the full first load


def change_round(uri: str, rows: int, round_: int) -> int:
    """1% updated and 1% inserted, one transaction: every changed row gets the same now()."""
    share, first_new = 100, rows + (round_ - 1) * rows // 100 + 1
    with psycopg.connect(uri) as conn:
        # One value for the whole round, past every generated one (they reach into 2024+).
        stamp = conn.execute(
            "SELECT greatest(now(), max(updated_at) + interval '1 s') FROM orders"
        ).fetchone()
        updated = conn.execute(
            "UPDATE orders SET status = %s, amount = amount + 1, updated_at = %s"
            " WHERE id %% %s = %s",
            (f"round-{round_}", stamp and stamp[0], share, round_),
        ).rowcount
        inserted = conn.execute(
            "INSERT INTO orders SELECT g, 1, 'new', 1, NULL, NULL, NULL, now(), %s, false,"
            " md5(g::text)::uuid FROM generate_series(%s::bigint, %s::bigint) g",
            (stamp and stamp[0], first_new, first_new + rows // 100 - 1),
        ).rowcount
    return updated + inserted


def load(source_uri: str, sink_uri: str) -> LoadResult:
    table = TableName("public", "orders")
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = ColumnCursorSource(src, table, "updated_at")
        return load_table(dst, source, TableName("landing", "orders"), MERGE, pipeline="orders")


def one_repeat(rows: int) -> list[tuple[int, int, int, int, float]]:
    with throwaway_cluster(["source", "sink"]) as info:
        source_uri, sink_uri = info.uri("source"), info.uri("sink")
        create_orders(source_uri, rows)
        figures = []
        for round_ in range(ROUNDS):
            changed = change_round(source_uri, rows, round_) if round_ else rows
            result = load(source_uri, sink_uri)
            kept = getattr(result, "boundary_rows", None)  # absent before cursor ties
            figures.append((changed, result.rows_read, result.rows, kept or 0, result.seconds))
        return figures


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    runs = [one_repeat(rows) for _ in range(repeats)]
    print(f"{rows:,} rows, median of {repeats} (changed / read / applied / kept / load s)")
    for round_ in range(ROUNDS):
        column = [run[round_] for run in runs]
        medians = [statistics.median(c[i] for c in column) for i in range(5)]
        changed, read, applied, kept, seconds = medians
        print(
            f"round {round_}: changed {changed:,.0f}, read {read:,.0f}, applied {applied:,.0f},"
            f" kept at the mark {kept:,.0f}, load {seconds:.2f} s"
        )


if __name__ == "__main__":
    main()

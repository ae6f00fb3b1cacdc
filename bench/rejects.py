"""What `on_bad_rows: reject` costs: the same load with `fail` and `reject`, clean and with bad rows.

    .venv/bin/python -m bench.rejects [rows] [repeats]

The orders table (bench.common) with `rows` rows (default 300,000), loaded by load_table (no
Dagster) into an existing target that has the source's columns plus a CHECK (customer_id >= 0)
the source lacks. Per strategy (full_refresh truncate_insert; incremental_merge delete_insert,
a full read into staging): `fail` and `reject` on clean data, then `reject` with 10 rows whose
customer_id is -1 (a `fail` load refuses them whole). Each figure is the median of `repeats`
loads (seconds of load_table, each after a VACUUM ANALYZE of the target). Run with PYTHONPATH at an older pgflow tree to measure it.
"""

from __future__ import annotations

import statistics
import sys
import time

import psycopg

from bench.common import (
    ORDERS_DDL,
    checkpoint,
    create_orders,
    throwaway_cluster,
    vacuum_analyze,
)
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import load_table
from pgflow.sources.postgres import PostgresTableSource

SOURCE = TableName("public", "orders")
TARGET = TableName("public", "orders_copy")
BAD_ROWS = 10
STRATEGIES = {
    "truncate_insert": {"mode": "full_refresh"},
    "delete_insert": {"mode": "incremental_merge", "unique_key": ("id",)},
}


def _load(source_uri: str, sink_uri: str, strategy: dict[str, object], policy: str) -> float:
    spec = StrategySpec(**strategy, on_bad_rows=policy)  # type: ignore[arg-type]
    vacuum_analyze(sink_uri, [str(TARGET)])  # the previous load's dead rows weigh on no run
    checkpoint(sink_uri)
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        started = time.monotonic()
        result = load_table(dst, PostgresTableSource(src, SOURCE), TARGET, spec, run_id="bench")
        seconds = time.monotonic() - started
    rejected = result.strategy_metadata.get("rows_rejected", 0)
    print(f"  {policy:6} rows {result.rows:>8,} rejected {rejected:>3} {seconds:6.2f} s")
    return seconds


def _median(runs: list[float]) -> str:
    return f"{statistics.median(runs):.2f} s"


def main(rows: int, repeats: int) -> None:
    with throwaway_cluster(["source", "sink"]) as info:
        source_uri, sink_uri = info.uri("source"), info.uri("sink")
        create_orders(source_uri, rows)
        with psycopg.connect(sink_uri, autocommit=True) as conn:
            conn.execute(ORDERS_DDL.format(table=TARGET.name))
            conn.execute(f"ALTER TABLE {TARGET.name} ADD CHECK (customer_id >= 0)")
        figures: dict[str, str] = {}
        for name, strategy in STRATEGIES.items():
            print(name)
            runs: dict[str, list[float]] = {"fail": [], "reject": []}
            for _ in range(repeats):  # interleaved: a busy machine weighs on both alike
                for policy, seconds in runs.items():
                    seconds.append(_load(source_uri, sink_uri, strategy, policy))
            for policy, seconds in runs.items():
                figures[f"{name} {policy} clean"] = _median(seconds)
        with psycopg.connect(source_uri, autocommit=True) as conn:
            step = rows // BAD_ROWS
            conn.execute("UPDATE orders SET customer_id = -1 WHERE id %% %s = 1", (step,))
        for name, strategy in STRATEGIES.items():
            print(name, f"with {BAD_ROWS} bad rows")
            bad = [_load(source_uri, sink_uri, strategy, "reject") for _ in range(repeats)]
            figures[f"{name} reject {BAD_ROWS} bad rows"] = _median(bad)
    print(f"\n{rows:,} rows, median of {repeats}:")
    for label, figure in figures.items():
        print(f"  {label:36} {figure}")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 300_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 3,
    )

"""Benchmark (not a test): incremental_merge policies on a 2,000,000-row target.

    make bench            # includes this; BENCH_MERGE_ROWS changes the target size

The staged set is what an incremental source would deliver: the changed rows only (1% and
10% of the target, all updates of existing keys). Before each measurement the target is
reset to the same 2M rows, so every policy merges the same delta into the same table.
Reported: the whole load (COPY of the delta into staging + apply + ANALYZE) and the apply
part alone.
"""

from __future__ import annotations

import os

import psycopg

from bench.common import throwaway_cluster
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sources.postgres import PostgresTableSource

ROWS = int(os.environ.get("BENCH_MERGE_ROWS", "2000000"))
POLICIES = tuple(os.environ.get("BENCH_POLICIES", "delete_insert,upsert,shadow_swap").split(","))
SHARES = (0.01, 0.10)
TABLE = """CREATE TABLE {name} (id bigint PRIMARY KEY, customer_id integer NOT NULL,
    amount numeric(12,2), status text, updated_at timestamptz, note text)"""
FILL = """INSERT INTO base SELECT g, g %% 50000, round((g %% 1000)::numeric / 7, 2),
    (ARRAY['new', 'paid', 'shipped'])[1 + g %% 3], '2024-01-01'::timestamptz + g * interval '1 s',
    md5(g::text) FROM generate_series(1, %s) g"""


def load(
    source_uri: str, sink_uri: str, table: str, target: str, strategy: StrategySpec
) -> LoadResult:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = PostgresTableSource(src, TableName("public", table))
        return load_table(dst, source, TableName("bench", target), strategy)


def prepare(source_uri: str) -> None:
    with psycopg.connect(source_uri, autocommit=True) as conn:
        conn.execute(TABLE.format(name="base"))
        conn.execute(FILL, (ROWS,))
        for share in SHARES:
            name = f"delta_{round(share * 100)}"
            conn.execute(TABLE.format(name=name))
            # Every k-th row, changed: same keys, new values.
            conn.execute(
                f"INSERT INTO {name} SELECT id, customer_id, amount + 1, 'changed', now(), note"
                f" FROM base WHERE id % {round(1 / share)} = 0"
            )
            conn.execute(f"VACUUM ANALYZE {name}")
        conn.execute("VACUUM ANALYZE base")


def main() -> None:
    with throwaway_cluster(["bench_source", "bench_sink"]) as info:
        source_uri, sink_uri = info.uri("bench_source"), info.uri("bench_sink")
        prepare(source_uri)
        print(f"incremental_merge into a {ROWS:,}-row target (changed rows staged):")
        print(f"  {'policy':<14} {'changed':>9} {'rows':>9} {'load s':>8} {'apply s':>8}")
        for share in SHARES:
            for policy in POLICIES:
                target = f"t_{policy}"
                load(source_uri, sink_uri, "base", target, StrategySpec(mode="full_refresh"))
                merge = StrategySpec(
                    mode="incremental_merge", merge_policy=policy, unique_key=("id",)
                )  # type: ignore[arg-type]
                result = load(source_uri, sink_uri, f"delta_{round(share * 100)}", target, merge)
                apply_seconds = result.seconds - result.copy_seconds
                print(
                    f"  {policy:<14} {share:>9.0%} {result.rows:>9,} {result.seconds:>8.2f} {apply_seconds:>8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

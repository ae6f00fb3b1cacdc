"""What an incremental round's checks and metadata cost, read from the run's own events.

    BENCH_ROWS=10000000 BENCH_REPEAT=3 .venv/bin/python -m bench.checks_cost

One throwaway cluster: `public.orders` (BENCH_ROWS rows, bench/common.py) in bench_source,
the target in bench_sink, Dagster's storage in bench_dagster. The spec is the CLI bench's
(incremental_strategy: column on updated_at, incremental_merge upsert on id) with
`checks: {value_parity: false}`, so that the checks are the ones issue 24 measured
(row_count_parity, unique_key, schema). The first `dagster asset materialize` loads the whole
table (not in the figures); then BENCH_REPEAT rounds each change 1% of the rows and run the
same command. Per round, from the run's events (STEP_START to STEP_SUCCESS):

- checks s: in the asset's step, from the IO manager's end to the step's success (a tree
  from before that change: the checks' own step);
- metadata s: the asset step minus the load's own seconds (`pgflow/duration_seconds`) and
  its checks: what the step spends around the load, the target's row count for
  `dagster/row_count` included;
- wall s: the whole process.

`BENCH_PGFLOW_TREE` runs another pgflow tree with this venv (e.g. `git archive main | tar -x
-C /tmp/pgflow-before`), for the figures before a change: its `pgflow` is put first on the
path, and the script prints which tree it ran.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import change_rows, checkpoint, create_orders, run_tree, tail, throwaway_cluster
from bench.pgflow_cli import INCREMENTAL_SPEC, METADATA, SPEC_YAML
from pgflow.config.model import TableName
from pgflow.localdb.cluster import ClusterInfo

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
TARGET = TableName("landing", "orders")
CHECKS_STEP = "landing_orders_checks"
ASSET_STEP = "landing__orders"
# The load's figures METADATA reads, and which count `dagster/row_count` came from.
ROW_COUNT_FROM = """
import dagster as dg
with dg.DagsterInstance.get() as instance:
    event = instance.get_latest_materialization_event(dg.AssetKey(["landing", "orders"]))
    value = event.asset_materialization.metadata.get("pgflow/row_count_from")
    print(value.value if value is not None else "count")
"""


def environment(work: Path, cluster: ClusterInfo, tree: Path) -> dict[str, str]:
    specs = work / "specs"
    specs.mkdir()
    options, strategy = INCREMENTAL_SPEC
    spec = SPEC_YAML.format(table="orders", target=TARGET, options=options, strategy=strategy)
    spec += "checks: {value_parity: false}\n"
    (specs / "orders.yaml").write_text(spec)
    home = work / "dagster_home"
    home.mkdir()
    # instance/dagster.yaml since the dg front door; a tree from before keeps it at its root
    shipped = tree / "instance" / "dagster.yaml"
    shutil.copy(shipped if shipped.exists() else tree / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PGFLOW_CONFIG": str(specs),
        "PGFLOW_CONN_BENCH_SOURCE": cluster.uri("bench_source"),
        "PGFLOW_CONN_BENCH_SINK": cluster.uri("bench_sink"),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": cluster.host,
        "DAGSTER_PG_PORT": str(cluster.port),
        "DAGSTER_PG_USER": cluster.user,
        "DAGSTER_PG_PASSWORD": cluster.password,
        "DAGSTER_PG_DB": "bench_dagster",
    }


def python(env: dict[str, str], tree: Path, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"reading the run back failed:\n{tail(done.stderr)}")
    return done.stdout.strip().splitlines()[-1]


def materialize(env: dict[str, str], tree: Path) -> dict[str, Any]:
    """One `dagster asset materialize` of the target with its checks: the round's figures."""
    cmd = [
        DAGSTER,
        "asset",
        "materialize",
        "-m",
        "pgflow.definitions",
        "--select",
        "landing/orders",
    ]
    done = run_tree(cmd, env, tree)
    if done.returncode != 0:
        raise RuntimeError(f"dagster asset materialize failed:\n{tail(done.stderr)}")
    meta = json.loads(python(env, tree, METADATA.format(key=["landing", "orders"])))
    steps = meta["steps"]
    # A tree from before issue 24's last change ran the checks in a step of their own.
    in_step = meta["checks_in_step"] if CHECKS_STEP not in steps else 0.0
    return {
        "wall": round(done.wall, 2),
        "load": meta["duration_seconds"],
        "rows_read": meta["rows_read"],
        "checks": steps.get(CHECKS_STEP, in_step),
        "metadata": round(steps[ASSET_STEP] - meta["duration_seconds"] - in_step, 2),
        "row_count_from": python(env, tree, ROW_COUNT_FROM),
    }


def median(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds if r[key] is not None)


def main() -> None:
    rows = int(os.environ.get("BENCH_ROWS", "10000000"))
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    tree = Path(os.environ.get("BENCH_PGFLOW_TREE", str(REPO))).resolve()
    databases = ["bench_source", "bench_sink", "bench_dagster"]
    with throwaway_cluster(databases) as cluster, tempfile.TemporaryDirectory() as work:
        env = environment(Path(work), cluster, tree)
        print(f"pgflow from {python(env, tree, 'import pgflow; print(pgflow.__file__)')}")
        create_orders(cluster.uri("bench_source"), rows)
        first = materialize(env, tree)
        print(f"first load of {rows:,} rows: {first}")
        rounds = []
        for repetition in range(repeat):
            changed = change_rows(cluster.uri("bench_source"), repetition)
            checkpoint(cluster.uri("postgres"))
            rounds.append({"changed": changed, **materialize(env, tree)})
            print(f"round {repetition + 1}: {rounds[-1]}")
    figures = {k: median(rounds, k) for k in ("wall", "load", "checks", "metadata")}
    print(
        f"{rows:,} rows, 1% changed, medians of {repeat} (machine shared): "
        f"wall {figures['wall']:.2f} s, load {figures['load']:.2f} s, "
        f"checks step {figures['checks']:.2f} s, metadata {figures['metadata']:.2f} s "
        f"(dagster/row_count from: {', '.join(sorted({r['row_count_from'] for r in rounds}))})"
    )


if __name__ == "__main__":
    main()

"""Benchmark (not a test): pgflow against the same tools run inside Dagster (issue 24).

    python -m bench.in_dagster                          # 2,000,000 rows, 3 repetitions
    BENCH_ROWS=100000 BENCH_REPEAT=1 python -m bench.in_dagster       # a quick run

`make bench` runs it after the suite (BENCH_SCENARIOS: `in_dagster`). Two throwaway clusters,
as the suite's (the source with BENCH_ROWS orders; the sink, which also holds Dagster's
storage). Every tool is one whole `dagster asset materialize` process, timed from start to exit,
its process tree's peak RSS polled (common.run_tree), each with a DAGSTER_HOME holding the
shipped dagster.yaml (storage in the sink cluster's bench_dagster database), so all of them pay
the same Dagster start-up:

- pgflow: `-m pgflow.definitions`, one spec (pgflow_cli.py's: full_refresh truncate_insert for
  the full load; incremental_merge upsert on id, cursor column updated_at);
- dagster-sling: `-f bench/peers/dagster_sling_defs.py` (sling_assets + SlingResource; the
  binary of the sling-linux-amd64 package through SLING_BINARY), full-refresh, or incremental
  on primary key id and update key updated_at;
- dagster-dlt: `-f bench/peers/dagster_dlt_defs.py` (@dlt_assets over sql_table, pyarrow
  backend), replace, or merge on id with dlt.sources.incremental("updated_at").

Both peers run in venvs of their own under .pgflow/bench/ (made on first use), pinned to
pgflow's Dagster (PEER_VENVS). Rounds: a full load of the table (with the psql binary COPY
pipe, the physical limit, beside them), BENCH_REPEAT times, the order rotating; then, after
each tool's untimed initial load, BENCH_REPEAT incremental rounds of 1% of the rows updated
and 1% inserted. Every target is checked against the source (count + checksum) before its
figure counts. `python -c "import dagster"` is timed in each venv (median of BENCH_REPEAT), so
the report can show each tool's time after that import. Results: bench/results-in-dagster.json
and the generated section of bench/README.md (in_dagster_report.py).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import in_dagster_report
from bench.common import (
    ORDERS_DDL,
    ORDERS_FILL,
    change_rows,
    checksum,
    create_orders,
    run_tree,
    tail,
    throwaway_cluster,
    vacuum_analyze,
)
from bench.peers import clean_env, venv_python, with_sslmode
from bench.pgflow_cli import DagsterCli
from bench.runs import (
    LIMIT,
    PSQL_TARGET,
    REPEAT,
    ROWS,
    SERVER_SETTINGS,
    SOURCE,
    TOOLS,
    Bench,
    Run,
    Tool,
    chosen,
    rotate,
    take,
)
from bench.scenarios import psql_pipe
from pgflow.config.model import TableName
from pgflow.localdb.cluster import ClusterInfo

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO / "bench" / "peers"
DAGSTER_PIN = ("dagster==1.13.27", "dagster-postgres==0.29.27")
PEER_VENVS = {
    "dagster-sling": (
        "dagster-sling-venv",
        (*DAGSTER_PIN, "dagster-sling==0.29.27", "sling-linux-amd64==1.4.11"),
        "import dagster_sling, sling_linux_amd64",
    ),
    "dagster-dlt": (
        "dagster-dlt-venv",
        (*DAGSTER_PIN, "dagster-dlt==0.29.27", "dlt[postgres,sql_database]==1.31.0", "pyarrow"),
        "import dagster_dlt, dlt, pyarrow, psycopg2",
    ),
}
FULL_SPEC = """
source:
  type: postgres
  connection_id: bench_source
  table: {{schema: public, name: {table}}}
sink:
  type: postgres
  connection_id: bench_sink
  table: {{schema: {target.schema}, name: {target.name}}}
  strategy: {{mode: full_refresh, method: truncate_insert}}
"""
# The run's pgflow metadata (its numbers), read in a process of its own as pgflow_cli.METADATA
# is (the bench process never imports Dagster).
METADATA = """
import json, dagster as dg
with dg.DagsterInstance.get() as instance:
    event = instance.get_latest_materialization_event(dg.AssetKey({key!r}))
    meta = event.asset_materialization.metadata
    figures = {{k.split("/")[1]: v.value for k, v in meta.items()
        if k.startswith("pgflow/") and isinstance(v.value, (int, float))}}
    print(json.dumps(figures))
"""


@dataclass
class Setting:
    bench: Bench
    sink_info: ClusterInfo
    changes: dict[str, int]  # the rows the current round changed ("round")


# -- the tools ------------------------------------------------------------------------------------


def pgflow_tool(s: Setting, name: str, target: TableName, full: bool) -> Tool:
    """pgflow's CLI (one spec) into `target`: full_refresh when `full`, else incremental_merge."""
    work = s.bench.work / f"pgflow_{target.schema}"
    work.mkdir()
    cli = DagsterCli.set_up(work, s.sink_info, s.bench.source_uri, s.bench.sink_uri, SOURCE, target)
    if full:  # the same set-up, its one spec a full refresh
        (work / "specs" / f"{SOURCE}.yaml").write_text(
            FULL_SPEC.format(table=SOURCE, target=target)
        )
    scenario = "full_load" if full else "incremental"

    def measure(rep: int) -> Run:
        key = [target.schema, target.name]
        cmd = [cli_dagster(), "asset", "materialize", "-m", "pgflow.definitions"]
        done = run_tree([*cmd, "--select", "/".join(key)], cli.env, REPO)
        if done.returncode != 0:
            raise RuntimeError(f"pgflow's dagster asset materialize failed:\n{tail(done.stderr)}")
        meta = read_metadata(cli.env, key, sys.executable)
        rows = int(meta.get("rows_written", 0))
        return Run(
            scenario, name, rep, done.wall, rows, done.rss_mb, True, meta.get("duration_seconds")
        )

    return name, str(target), measure


def cli_dagster() -> str:
    return str(Path(sys.executable).with_name("dagster"))


def read_metadata(env: dict[str, str], key: list[str], python: str) -> dict[str, float]:
    done = subprocess.run(
        [python, "-c", METADATA.format(key=key)], env=env, cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        return {}  # the figure stands without pgflow's own seconds
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def peer_tool(s: Setting, peer: str, name: str, target: str, settings: dict[str, str]) -> Tool:
    """A peer's `dagster asset materialize -f bench/peers/<peer>_defs.py` into `target`."""
    venv, requirements, check = PEER_VENVS[peer]
    work = s.bench.work / target.replace(".", "_")
    (work / "dagster_home").mkdir(parents=True)
    shutil.copy(REPO / "instance" / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
    info = s.sink_info
    dagster_env = {  # pgflow_cli.DagsterCli's storage: the sink cluster's bench_dagster
        "DAGSTER_PG_HOST": info.host,
        "DAGSTER_PG_PORT": str(info.port),
        "DAGSTER_PG_USER": info.user,
        "DAGSTER_PG_PASSWORD": info.password,
        "DAGSTER_PG_DB": "bench_dagster",
    }
    scenario = "incremental" if name.endswith(("incremental", "merge")) else "full_load"
    defs = PEERS / f"{peer.replace('-', '_')}_defs.py"

    def measure(rep: int) -> Run:
        python = venv_python(venv, requirements, check)
        env = {
            **clean_env(),
            **dagster_env,
            "DAGSTER_HOME": str(work / "dagster_home"),
            "BENCH_SOURCE_URI": s.bench.source_uri,
            "BENCH_SINK_URI": s.bench.sink_uri,
            **settings,
        }
        if peer == "dagster-sling":  # the `sling` package's documented setting for its binary
            env["SLING_BINARY"] = sling_binary(python)
            # Sling's Postgres driver asks for TLS unless told; the local clusters have none.
            env["BENCH_SOURCE_URI"] = with_sslmode(s.bench.source_uri)
            env["BENCH_SINK_URI"] = with_sslmode(s.bench.sink_uri)
        cmd = [str(python.with_name("dagster")), "asset", "materialize", "-f", str(defs)]
        done = run_tree([*cmd, "--select", "*"], env, work)
        if done.returncode != 0:
            raise RuntimeError(f"{peer} failed:\n{tail(done.stderr + done.stdout)}")
        # The rows the tool must have moved (the check below proves it did).
        rows = s.changes.get("round", ROWS) if scenario == "incremental" else ROWS
        return Run(scenario, name, rep, done.wall, rows, done.rss_mb)

    return name, target, measure


def sling_binary(python: Path) -> str:
    code = "import sling_linux_amd64 as s; print(s.SLING_BIN)"
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


# -- the rounds -----------------------------------------------------------------------------------


def change_round(uri: str, rep: int) -> int:
    """1% of the rows updated (common.change_rows) and 1% new rows inserted, every one newer
    than any row before; how many rows changed."""
    updated = change_rows(uri, rep, table=SOURCE)
    shift = (
        f"(SELECT greatest(max(updated_at) - now(), '0'::interval) + interval '1 s' FROM {SOURCE})"
    )
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute(f"SELECT max(id) + 1 FROM {SOURCE}").fetchone()
        lo = int(row[0]) if row else 1
        conn.execute(f"CREATE TEMP TABLE fresh (LIKE {SOURCE})")
        conn.execute(ORDERS_FILL.format(table="fresh"), {"lo": lo, "hi": lo + ROWS // 100 - 1})
        conn.execute(f"UPDATE fresh SET updated_at = clock_timestamp() + {shift}")
        inserted = conn.execute(f"INSERT INTO {SOURCE} SELECT * FROM fresh").rowcount
    return updated + inserted


def full_load(s: Setting) -> None:
    print(f"\nfull load of {ROWS:,} rows, each tool a whole process:", flush=True)
    with psycopg.connect(s.bench.sink_uri, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS psql")
        conn.execute(ORDERS_DDL.format(table=PSQL_TARGET))  # the pipe truncates, never creates
    tools: list[Tool] = [
        (LIMIT, PSQL_TARGET, lambda rep: pipe_run(s.bench, rep)),
        pgflow_tool(s, "pgflow CLI full_refresh", TableName("pgflow_full", SOURCE), True),
        peer_tool(s, "dagster-sling", "dagster-sling full-refresh", "dsling_full.orders",
                  {"BENCH_SLING_MODE": "full-refresh", "BENCH_SLING_OBJECT": "dsling_full.orders"}),
        peer_tool(s, "dagster-dlt", "dagster-dlt replace (pyarrow)", f"ddlt_full.{SOURCE}",
                  {"BENCH_DLT_DISPOSITION": "replace", "BENCH_DLT_DATASET": "ddlt_full",
                   "BENCH_DLT_PIPELINES_DIR": str(s.bench.work / "dlt_full")}),
    ]  # fmt: skip
    expected = checksum(s.bench.source_uri, f"public.{SOURCE}")
    rotate(s.bench, "full_load", tools, lambda rep: expected)


def pipe_run(bench: Bench, rep: int) -> Run:
    run = psql_pipe(bench)
    run.scenario, run.repetition = "full_load", rep
    return run


def incremental(s: Setting) -> None:
    print(f"\nincremental rounds (1% updated + 1% inserted of {ROWS:,} rows):", flush=True)
    tools: list[Tool] = [
        pgflow_tool(s, "pgflow CLI incremental", TableName("pgflow_incr", SOURCE), False),
        peer_tool(s, "dagster-sling", "dagster-sling incremental", "dsling_incr.orders",
                  {"BENCH_SLING_MODE": "incremental", "BENCH_SLING_OBJECT": "dsling_incr.orders"}),
        peer_tool(s, "dagster-dlt", "dagster-dlt merge", f"ddlt_incr.{SOURCE}",
                  {"BENCH_DLT_DISPOSITION": "merge", "BENCH_DLT_DATASET": "ddlt_incr",
                   "BENCH_DLT_PIPELINES_DIR": str(s.bench.work / "dlt_incr")}),
    ]  # fmt: skip
    print(" initial loads (the whole table; not in the medians)", flush=True)
    expected = checksum(s.bench.source_uri, f"public.{SOURCE}")
    alive = [
        tool
        for tool in chosen(tools)
        if s.bench.attempt(
            "incremental", tool[0], lambda t=tool: take(s.bench, t[2], -1, expected, t[1])
        )
    ]
    vacuum_analyze(s.bench.sink_uri, [target for _, target, _ in alive])

    def changed(rep: int) -> tuple[int, int]:
        s.changes["round"] = change_round(s.bench.source_uri, rep)
        print(f" {s.changes['round']:,} rows changed", flush=True)
        return checksum(s.bench.source_uri, f"public.{SOURCE}")

    rotate(s.bench, "incremental", alive, changed)


def import_times() -> dict[str, list[float]]:
    """`python -c "import dagster"` in each chosen tool's interpreter, BENCH_REPEAT (at least 3)
    times: the Dagster start-up every tool pays alike."""
    pythons: dict[str, Callable[[], str]] = {"pgflow": lambda: sys.executable}
    for peer, (venv, requirements, check) in PEER_VENVS.items():
        pythons[peer] = lambda v=venv, r=requirements, c=check: str(venv_python(v, r, c))
    times: dict[str, list[float]] = {}
    for tool, python in pythons.items():
        if tool not in TOOLS:
            continue
        command = [python(), "-c", "import dagster"]
        times[tool] = [run_tree(command, clean_env()).wall for _ in range(max(REPEAT, 3))]
        print(
            f" import dagster ({tool}): median {statistics.median(times[tool]):.2f} s", flush=True
        )
    return times


def main() -> None:
    from bench.suite import machine

    started = time.time()
    load_at_start = os.getloadavg()[0]  # others' work on the machine, said with the figures
    with (
        throwaway_cluster(["bench_source"], SERVER_SETTINGS) as source_info,
        throwaway_cluster(["bench_sink", "bench_dagster"], SERVER_SETTINGS) as sink_info,
        tempfile.TemporaryDirectory(prefix="pgflow-bench-dagster-") as tmp,
    ):
        source_uri, sink_uri = source_info.uri("bench_source"), sink_info.uri("bench_sink")
        create_orders(source_uri, ROWS, SOURCE)
        print(f"source: {ROWS:,} orders; {REPEAT} repetition(s); the peers in Dagster", flush=True)
        bench = Bench(source_uri, sink_uri, Path(tmp), 0.0)
        s = Setting(bench, sink_info, {})
        imports = import_times()

        def results() -> dict[str, Any]:
            return {
                "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
                "duration_s": round(time.time() - started),
                "machine": machine(source_uri),
                "load_average_at_start": round(load_at_start, 2),
                "rows": ROWS,
                "repeat": REPEAT,
                "server_settings": SERVER_SETTINGS,
                "peers": {peer: list(spec[1]) for peer, spec in PEER_VENVS.items()},
                "import_dagster_s": imports,
                "runs": [vars(r) for r in bench.runs],
                "failures": bench.failures,
            }

        full_load(s)
        in_dagster_report.publish(results())  # a run stopped later still leaves its full loads
        incremental(s)
        in_dagster_report.publish(results())


if __name__ == "__main__":
    from bench.runs import RUN_IN_DAGSTER

    # --if-asked (make bench): only when BENCH_SCENARIOS names `in_dagster` (its default does).
    if sys.argv[1:2] != ["--if-asked"] or RUN_IN_DAGSTER:
        main()

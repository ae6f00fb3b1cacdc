"""The benchmark suite (not a test): one generated orders dataset, every tool side by side.

    make bench                                            # 2,000,000 rows, 3 repetitions
    BENCH_ROWS=100000 BENCH_REPEAT=1 BENCH_CDC_CHANGES=50000 python -m pgflow_tests.bench.suite
    BENCH_ROWS=10000000 BENCH_SCENARIOS=full_refresh,incremental BENCH_TOOLS=psql,pgflow make bench

Two throwaway local clusters (the source, and the sink: a CDC slot decodes all of its
cluster's WAL, so the sink must be another cluster), one orders table of BENCH_ROWS rows in
the source, then the scenarios of BENCH_SCENARIOS (default all, in this order), each tool
BENCH_REPEAT times (default 3; the order of the tools rotates), medians (BENCH_TOOLS:
a subset of psql,pgflow,dlt,sling):

- full_refresh: the psql binary COPY pipe (the physical limit), pgflow full_refresh
  truncate_insert and exchange, dlt replace (sql_table, pyarrow backend), Sling full-refresh;
- incremental: 1% of the rows change, then pgflow in-process (ColumnCursorSource, merge
  policies upsert and delete_insert), the pgflow CLI (the whole `dagster asset materialize`
  process, and its load time from the metadata), dlt merge, Sling incremental (primary key
  id, update key updated_at); each tool made its initial load first;
- cdc: pgflow's replicate() applying BENCH_CDC_CHANGES (default 1,000,000) changes, cdc.py's
  "mixed" scenario (40% inserts, 40% updates, 20% deletes), merge policy delete_insert;
- delta: Postgres -> Delta (load_delta full_refresh), Delta -> Postgres (sync_delta into a
  new target) and the unchanged Delta -> Postgres re-run.

pgflow's in-process figures come from a worker subprocess (`--job`), which times the call and
reports its VmHWM; every other tool is timed as a whole process. Peak RSS of every figure is
the summed RSS of the client process tree, polled from /proc (see common.run_tree). Every
target is checked against its source before its figure counts (common.checksum); a mismatch
marks the figure INVALID. Results: bench/results.json, bench/chart.png, and the generated
section of bench/README.md (bench_report.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgflow.config.model import StrategySpec, TableName
from pgflow_tests.bench import bench_report, cdc
from pgflow_tests.bench.common import (
    ORDERS_DDL,
    Finished,
    change_rows,
    checkpoint,
    checksum,
    create_orders,
    run_tree,
    tail,
    throwaway_cluster,
    vacuum_analyze,
)
from pgflow_tests.bench.peers import DLT_REQUIREMENTS, SLING_REQUIREMENTS, Dlt, Sling
from pgflow_tests.bench.pgflow_cli import DagsterCli

ROWS = int(os.environ.get("BENCH_ROWS", "2000000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
CDC_CHANGES = int(os.environ.get("BENCH_CDC_CHANGES", "1000000"))
ALL_SCENARIOS = ("full_refresh", "incremental", "cdc", "delta")
SCENARIOS = tuple(
    s for s in os.environ.get("BENCH_SCENARIOS", ",".join(ALL_SCENARIOS)).split(",") if s
)
CDC_SCENARIO = os.environ.get("BENCH_SUITE_CDC_SCENARIO", "mixed")
# Tools to run, by the first word of their name (psql, pgflow, dlt, sling); default all.
TOOLS = tuple(t.lower() for t in os.environ.get("BENCH_TOOLS", "psql,pgflow,dlt,sling").split(","))
# Server settings for both clusters, "name=value,name=value" (e.g. shared_buffers=2GB,
# random_page_cost=1.1, a warehouse's); default LocalPostgres's. A run with settings gets a
# results section of its own, beside the default one.
SERVER_SETTINGS = dict(
    item.split("=", 1) for item in os.environ.get("BENCH_SERVER_SETTINGS", "").split(",") if item
)
REPO = Path(__file__).resolve().parents[2]
SOURCE = "orders"
PSQL_TARGET = "psql.orders"
# Merge policies measured in process; the CLI run uses the first (pgflow_cli.py's spec).
MERGE_POLICIES = ("upsert", "delete_insert")
LIMIT = "psql COPY binary pipe"
# COPY streams of the parallel exchange (sink.strategy.parallelism); default one per CPU.
STREAMS = int(os.environ.get("BENCH_STREAMS", str(os.cpu_count() or 2)))


@dataclass
class Run:
    scenario: str
    tool: str
    repetition: int  # -1: an initial load (not part of the medians)
    wall: float
    rows: int  # rows (or changes) the run moved
    rss_mb: float | None
    valid: bool = True
    own_seconds: float | None = None  # the tool's own figure for its load, without start-up
    note: str = ""


@dataclass
class Bench:
    source_uri: str
    sink_uri: str
    work: Path
    row_bytes: float  # average bytes of a source row (pg_table_size / rows)
    runs: list[Run] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def record(self, run: Run, expected: tuple[int, int] | None, target: str | None) -> None:
        """Keep `run` once its target is checked against the source (`expected`)."""
        if expected is not None and target is not None:
            got = checksum(self.sink_uri, target)
            if got != expected:
                run.valid = False
                run.note = f"target {target} (count, checksum) {got} != source {expected}"
                print(f"  !!!!!!!! {run.tool}: {run.note}: INVALID !!!!!!!!", flush=True)
        self.runs.append(run)
        rate = f"{run.rows / run.wall:>12,.0f} rows/s" if run.rows else ""
        print(
            f"  {run.tool:<40} {run.wall:8.2f} s {run.rows:>11,} rows {rate}"
            f"  peak {bench_report.fmt(run.rss_mb, ',.0f')} MB{'' if run.valid else '  INVALID'}",
            flush=True,
        )

    def attempt(self, scenario: str, tool: str, measure: Callable[[], None]) -> bool:
        """Run one measurement; a tool that fails is reported and not measured further."""
        try:
            measure()
            return True
        except Exception as exc:  # a broken peer must not take the other figures with it
            reason = f"{type(exc).__name__}: {exc}"
            self.failures.append({"scenario": scenario, "tool": tool, "reason": reason})
            print(f"  !! {tool} failed; not measured further:\n{tail(reason)}", flush=True)
            return False


# -- pgflow in a worker process -------------------------------------------------------------------


def job(kind: str, **settings: Any) -> tuple[Finished, dict[str, Any]]:
    """Run one pgflow call in a worker subprocess: the process and the call's own figures."""
    payload = json.dumps({"kind": kind, **settings})
    done = run_tree([sys.executable, "-m", "pgflow_tests.bench.suite", "--job", payload], cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"pgflow {kind} failed:\n{tail(done.stderr)}")
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def run_job(settings: dict[str, Any]) -> dict[str, Any]:
    """The worker's side of `job`: the call, timed, and this process's peak RSS."""
    from pgflow_tests.bench.common import peak_rss_mb, reset_peak_rss

    reset_peak_rss()
    started = time.perf_counter()
    figures = JOBS[settings["kind"]](settings)
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_rss_mb(), **figures}


def full_refresh_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.postgres_load import load_table
    from pgflow.sinks.postgres.parallel_exchange import Streams
    from pgflow.sources.postgres import PostgresTableSource

    parallelism = s.get("parallelism", 1)
    strategy = StrategySpec(mode="full_refresh", method=s["method"], parallelism=parallelism)
    streams = Streams(
        parallelism,
        connect_source=partial(psycopg.connect, s["source"]),
        connect_sink=partial(psycopg.connect, s["sink"], autocommit=True),
    )
    with psycopg.connect(s["source"]) as src, psycopg.connect(s["sink"], autocommit=True) as dst:
        source = PostgresTableSource(src, TableName("public", s["table"]))
        result = load_table(dst, source, TableName(*s["target"]), strategy, streams=streams)
    if parallelism > 1 and result.one_stream_reason:  # not the figure the tool's name promises
        raise RuntimeError(f"the parallel exchange ran as one stream: {result.one_stream_reason}")
    note = f"{result.streams} streams" if parallelism > 1 else ""
    return {"rows": result.rows, "own": result.seconds, "note": note}


def incremental_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.postgres_load import load_table
    from pgflow.sources.column_cursor import ColumnCursorSource

    strategy = StrategySpec(
        mode="incremental_merge", unique_key=("id",), merge_policy=s["merge_policy"]
    )
    with psycopg.connect(s["source"]) as src, psycopg.connect(s["sink"], autocommit=True) as dst:
        source = ColumnCursorSource(src, TableName("public", s["table"]), column="updated_at")
        result = load_table(dst, source, TableName(*s["target"]), strategy, pipeline="bench")
    return {"rows": result.rows, "own": result.seconds}


def to_delta_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.delta_load import load_delta
    from pgflow.sources.postgres import PostgresTableSource

    with psycopg.connect(s["source"]) as conn:
        source = PostgresTableSource(conn, TableName("public", s["table"]))
        result = load_delta(source, s["path"], StrategySpec(mode="full_refresh"), pipeline="bench")
    return {"rows": result.rows_read, "own": result.seconds}


def from_delta_job(s: dict[str, Any]) -> dict[str, Any]:
    from pgflow.sinks.postgres.delta_sync import sync_delta

    result = sync_delta(
        s["sink"], s["path"], TableName(*s["target"]), ("id",), pipeline=s["pipeline"]
    )
    return {"rows": result.rows_read, "own": None, "skipped": result.skipped}


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "full_refresh": full_refresh_job,
    "incremental": incremental_job,
    "to_delta": to_delta_job,
    "from_delta": from_delta_job,
}


def pgflow_run(scenario: str, tool: str, repetition: int, kind: str, **settings: Any) -> Run:
    done, figures = job(kind, **settings)
    rss = max(done.rss_mb, figures["peak_mb"] or 0)
    note = "skipped by version" if figures.get("skipped") else figures.get("note", "")
    return Run(
        scenario, tool, repetition, figures["seconds"], figures["rows"], rss, True,
        figures["own"], note,
    )  # fmt: skip


# -- full refresh ---------------------------------------------------------------------------------


def psql_pipe(bench: Bench) -> Run:
    with psycopg.connect(bench.sink_uri, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {PSQL_TARGET}")
    out = f"\\copy (SELECT * FROM {SOURCE}) TO STDOUT (FORMAT BINARY)"
    into = f"\\copy {PSQL_TARGET} FROM STDIN (FORMAT BINARY)"
    pipe = (
        f"set -o pipefail; psql {shlex.quote(bench.source_uri)} -qc {shlex.quote(out)}"
        f" | psql {shlex.quote(bench.sink_uri)} -qc {shlex.quote(into)}"
    )
    done = run_tree(["bash", "-c", pipe])
    if done.returncode != 0:
        raise RuntimeError(f"psql pipe failed:\n{tail(done.stderr)}")
    return Run("full_refresh", LIMIT, 0, done.wall, ROWS, done.rss_mb)


def full_refresh(bench: Bench) -> None:
    print(f"\nfull_refresh of {ROWS:,} rows:", flush=True)
    pgflow_tools = [
        (f"pgflow {method}", f"pgflow_{method}", method, 1)
        for method in ("truncate_insert", "exchange")
    ]
    if STREAMS > 1:
        pgflow_tools.append(
            (f"pgflow exchange, {STREAMS} streams", "pgflow_parallel", "exchange", STREAMS)
        )
    with psycopg.connect(bench.sink_uri, autocommit=True) as conn:
        # Every target exists before the first timed run: each run refreshes, none creates.
        for schema in ["psql", *(t[1] for t in pgflow_tools)]:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(ORDERS_DDL.format(table=f"{schema}.{SOURCE}"))
    dlt = Dlt(bench.source_uri, bench.sink_uri, SOURCE, "dlt_full", "replace", bench.work)
    sling = Sling(
        bench.source_uri, bench.sink_uri, SOURCE, "sling_full.orders", "full-refresh", bench.work
    )
    tools: list[tuple[str, str, Callable[[int], Run]]] = [
        (LIMIT, PSQL_TARGET, lambda rep: dataclasses.replace(psql_pipe(bench), repetition=rep)),
        *[
            (tool, f"{schema}.{SOURCE}", pgflow_full_refresh(bench, tool, schema, method, streams))
            for tool, schema, method, streams in pgflow_tools
        ],
        ("dlt replace (pyarrow)", dlt.target, peer_full_refresh(dlt, "dlt replace (pyarrow)")),
        ("Sling full-refresh", sling.target, peer_full_refresh(sling, "Sling full-refresh")),
    ]
    expected = checksum(bench.source_uri, f"public.{SOURCE}")
    rotate(bench, "full_refresh", tools, lambda rep: expected)


def pgflow_full_refresh(
    bench: Bench, tool: str, schema: str, method: str, streams: int
) -> Callable[[int], Run]:
    def measure(rep: int) -> Run:
        return pgflow_run(
            "full_refresh", tool, rep, "full_refresh", method=method, parallelism=streams,
            source=bench.source_uri, sink=bench.sink_uri, table=SOURCE, target=[schema, SOURCE],
        )  # fmt: skip

    return measure


def peer_full_refresh(peer: Dlt | Sling, tool: str) -> Callable[[int], Run]:
    def measure(rep: int) -> Run:
        done, rows = peer.run()
        return Run("full_refresh", tool, rep, done.wall, rows or ROWS, done.rss_mb)

    return measure


def chosen(
    tools: list[tuple[str, str, Callable[[int], Run]]],
) -> list[tuple[str, str, Callable[[int], Run]]]:
    """The tools BENCH_TOOLS names."""
    return [tool for tool in tools if tool[0].split()[0].lower() in TOOLS]


def rotate(
    bench: Bench,
    scenario: str,
    tools: list[tuple[str, str, Callable[[int], Run]]],
    expected: Callable[[int], tuple[int, int]],
) -> None:
    """Each tool REPEAT times, their order rotating; a failed tool is dropped."""
    tools = chosen(tools)
    failed: set[str] = set()
    for rep in range(REPEAT):
        want = expected(rep)
        print(f" repetition {rep + 1} of {REPEAT}", flush=True)
        shift = rep % len(tools)
        for name, target, measure in tools[shift:] + tools[:shift]:
            if name in failed:
                continue
            if not bench.attempt(scenario, name, partial(take, bench, measure, rep, want, target)):
                failed.add(name)


def take(
    bench: Bench,
    measure: Callable[[int], Run],
    rep: int,
    expected: tuple[int, int],
    target: str,
) -> None:
    checkpoint(bench.source_uri, bench.sink_uri)
    bench.record(measure(rep), expected, target)


# -- incremental ----------------------------------------------------------------------------------


def incremental(bench: Bench, sink_info: Any) -> None:
    print(f"\nincremental merge after 1% of {ROWS:,} rows changed:", flush=True)
    cli_target = TableName("pgflow_cli", SOURCE)
    (bench.work / "cli").mkdir()
    cli = DagsterCli.set_up(
        bench.work / "cli", sink_info, bench.source_uri, bench.sink_uri, SOURCE, cli_target
    )
    dlt = Dlt(bench.source_uri, bench.sink_uri, SOURCE, "dlt_incr", "merge", bench.work)
    sling = Sling(
        bench.source_uri, bench.sink_uri, SOURCE, "sling_incr.orders", "incremental", bench.work
    )

    def pgflow(policy: str) -> Callable[[int], Run]:
        def measure(rep: int) -> Run:
            return pgflow_run(
                "incremental", f"pgflow in-process {policy}", rep, "incremental",
                source=bench.source_uri, sink=bench.sink_uri, table=SOURCE,
                target=[f"pgflow_{policy}", SOURCE], merge_policy=policy,
            )  # fmt: skip

        return measure

    def cli_run(rep: int) -> Run:
        done, meta = cli.run()
        steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in meta["steps"].items())
        print(f"    the run's steps: {steps}", flush=True)
        return Run(
            "incremental", "pgflow CLI (dagster process)", rep, done.wall,
            int(meta["rows_applied"]), done.rss_mb, True, float(meta["duration_seconds"]),
        )  # fmt: skip

    def peer(tool: Dlt | Sling, name: str) -> Callable[[int], Run]:
        def measure(rep: int) -> Run:
            done, rows = tool.run()
            return Run("incremental", name, rep, done.wall, rows or 0, done.rss_mb)

        return measure

    tools: list[tuple[str, str, Callable[[int], Run]]] = [
        *[
            (f"pgflow in-process {policy}", f"pgflow_{policy}.{SOURCE}", pgflow(policy))
            for policy in MERGE_POLICIES
        ],
        ("pgflow CLI (dagster process)", str(cli_target), cli_run),
        ("dlt merge (pyarrow)", dlt.target, peer(dlt, "dlt merge (pyarrow)")),
        ("Sling incremental", sling.target, peer(sling, "Sling incremental")),
    ]
    print(" initial loads (the whole table; not in the medians)", flush=True)
    expected = checksum(bench.source_uri, f"public.{SOURCE}")
    alive = []
    for name, target, measure in chosen(tools):
        if bench.attempt("incremental", name, partial(take, bench, measure, -1, expected, target)):
            alive.append((name, target, measure))
    # Steady state: autovacuum's first pass over the freshly loaded targets would otherwise
    # land in whichever timed runs it overlaps.
    vacuum_analyze(bench.sink_uri, [target for _, target, _ in alive])

    def changed(rep: int) -> tuple[int, int]:
        rows = change_rows(bench.source_uri, rep, table=SOURCE)
        print(f" {rows:,} rows changed", flush=True)
        return checksum(bench.source_uri, f"public.{SOURCE}")

    rotate(bench, "incremental", alive, changed)


# -- CDC ------------------------------------------------------------------------------------------


def cdc_scenario(bench: Bench) -> None:
    """cdc.py's machinery: its scenario, once per repetition on a table of its own."""
    print(f"\nCDC: {CDC_CHANGES:,} changes ({CDC_SCENARIO}):", flush=True)
    cdc.CHANGES = CDC_CHANGES  # cdc.py's module settings: the suite's size, one policy
    cdc.POLICIES = ("delete_insert",)
    (scenario,) = [s for s in cdc.scenarios_named((CDC_SCENARIO,))]
    for rep in range(REPEAT):

        def once(rep: int = rep) -> None:
            named = dataclasses.replace(scenario, name=f"{scenario.name}_{rep}")
            (pipeline,) = cdc.run_scenario(named, bench.source_uri, bench.sink_uri)
            f = pipeline.figures or {}
            run = Run(
                "cdc", f"pgflow replicate ({CDC_SCENARIO}, delete_insert)", rep, f["wall"],
                f["changes"], f["peak_rss_mb"], pipeline.valid, None,
                "" if pipeline.valid else "target differs from the source",
            )  # fmt: skip
            bench.record(run, None, None)

        if not bench.attempt("cdc", "pgflow replicate", once):
            return


# -- Delta ----------------------------------------------------------------------------------------


def delta_check(bench: Bench, path: str) -> str:
    """Compare the Delta table at `path` with the source: count and per-column sums; "" if
    equal, else what differs."""
    import polars as pl

    frame = pl.read_delta(path).select(
        pl.len().alias("rows"),
        pl.col("id").sum().alias("ids"),
        pl.col("customer_id").cast(pl.Int64).sum().alias("customers"),
        pl.col("amount").cast(pl.Float64).sum().round(2).alias("amount"),
        pl.col("note").count().alias("notes"),
        pl.col("paid").cast(pl.Int64).sum().alias("paid"),
    )
    got = tuple(frame.row(0))
    with psycopg.connect(bench.source_uri) as conn:
        row = conn.execute(
            "SELECT count(*), sum(id), sum(customer_id), round(sum(amount)::float8::numeric, 2),"
            f" count(note), sum(paid::int) FROM {SOURCE}"
        ).fetchone()
    assert row is not None
    want = tuple(float(v) if i == 3 else int(v) for i, v in enumerate(row))
    return "" if got == want else f"delta {got} != source {want}"


def delta(bench: Bench) -> None:
    print(f"\nPostgres -> Delta -> Postgres, {ROWS:,} rows:", flush=True)
    path = str(bench.work / "lake" / SOURCE)
    expected = checksum(bench.source_uri, f"public.{SOURCE}")
    for rep in range(REPEAT):

        def to_delta(rep: int = rep) -> None:
            run = pgflow_run(
                "delta", "pgflow Postgres -> Delta", rep, "to_delta",
                source=bench.source_uri, table=SOURCE, path=path,
            )  # fmt: skip
            differs = delta_check(bench, path)
            if differs:
                run.valid, run.note = False, differs
            bench.record(run, None, None)

        def from_delta(rep: int = rep) -> None:
            target = ["gold", f"{SOURCE}_{rep}"]
            settings = {"sink": bench.sink_uri, "path": path, "target": target}
            for tool in ("pgflow Delta -> Postgres", "pgflow Delta -> Postgres, unchanged re-run"):
                run = pgflow_run("delta", tool, rep, "from_delta", pipeline=f"r{rep}", **settings)
                if "unchanged" in tool and run.note != "skipped by version":
                    run.valid, run.note = False, "the unchanged re-run was not skipped"
                bench.record(run, expected, ".".join(target))

        if not (
            bench.attempt("delta", "pgflow Postgres -> Delta", to_delta)
            and bench.attempt("delta", "pgflow Delta -> Postgres", from_delta)
        ):
            return


# -- the run --------------------------------------------------------------------------------------


def machine(source_uri: str) -> dict[str, Any]:
    with psycopg.connect(source_uri) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    model = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
    return {
        "cpus": os.cpu_count(),
        "cpu": model[0].split(":", 1)[1].strip() if model else platform.processor(),
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": row[0] if row else "?",
    }


def shown_settings(uri: str) -> dict[str, str]:
    """The server's own value of each BENCH_ setting (proof the restart took it)."""
    with psycopg.connect(uri) as conn:
        return {
            name: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0])  # type: ignore[index]
            for name in SERVER_SETTINGS
        }


def source_figures(source_uri: str) -> tuple[int, str]:
    """Bytes of the source table (heap + TOAST, no indexes) and their pretty form."""
    with psycopg.connect(source_uri) as conn:
        row = conn.execute(
            f"SELECT pg_table_size('{SOURCE}'), pg_size_pretty(pg_table_size('{SOURCE}'))"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def main() -> None:
    unknown = set(SCENARIOS) - set(ALL_SCENARIOS)
    if unknown:
        raise SystemExit(f"BENCH_SCENARIOS: unknown {sorted(unknown)}; known {ALL_SCENARIOS}")
    started = time.time()
    with (
        throwaway_cluster(["bench_source"], SERVER_SETTINGS) as source_info,
        throwaway_cluster(["bench_sink", "bench_dagster"], SERVER_SETTINGS) as sink_info,
        tempfile.TemporaryDirectory(prefix="pgflow-bench-") as tmp,
    ):
        source_uri, sink_uri = source_info.uri("bench_source"), sink_info.uri("bench_sink")
        made = time.perf_counter()
        create_orders(source_uri, ROWS, SOURCE)
        table_bytes, pretty = source_figures(source_uri)
        print(
            f"source: {ROWS:,} orders, {pretty} (pg_table_size), made in"
            f" {time.perf_counter() - made:.0f} s; scenarios {', '.join(SCENARIOS)};"
            f" {REPEAT} repetition(s)",
            flush=True,
        )
        bench = Bench(source_uri, sink_uri, Path(tmp), table_bytes / ROWS)
        steps: dict[str, Callable[[], None]] = {
            "full_refresh": lambda: full_refresh(bench),
            "incremental": lambda: incremental(bench, sink_info),
            "cdc": lambda: cdc_scenario(bench),
            "delta": lambda: delta(bench),
        }
        for name in SCENARIOS:
            steps[name]()
        results = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
            "duration_s": round(time.time() - started),
            "machine": machine(source_uri),
            "rows": ROWS,
            "server_settings": shown_settings(sink_uri),
            "repeat": REPEAT,
            "cdc_changes": CDC_CHANGES,
            "scenarios": list(SCENARIOS),
            "tools": list(TOOLS),
            "peers": {"dlt": list(DLT_REQUIREMENTS), "sling": list(SLING_REQUIREMENTS)},
            "source_table_bytes": table_bytes,
            "row_bytes": bench.row_bytes,
            "runs": [dataclasses.asdict(r) for r in bench.runs],
            "failures": bench.failures,
        }
    bench_report.publish(results)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--job"]:
        print(json.dumps(run_job(json.loads(sys.argv[2]))))
    else:
        main()

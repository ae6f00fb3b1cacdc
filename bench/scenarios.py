"""The suite's scenarios: full refresh, incremental, CDC, Delta (the suite's docstring says what
each measures)."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg

from bench import cdc
from bench.common import (
    ORDERS_DDL,
    change_rows,
    checksum,
    run_tree,
    tail,
    vacuum_analyze,
)
from bench.peers import Dlt, Sling
from bench.pgflow_cli import FULL_SPEC, DagsterCli
from bench.runs import (
    CDC_CHANGES,
    CDC_SCENARIO,
    LIMIT,
    MERGE_POLICIES,
    PSQL_TARGET,
    REPEAT,
    ROWS,
    SOURCE,
    STREAMS,
    Bench,
    Run,
    Tool,
    chosen,
    pgflow_run,
    rotate,
    take,
)
from pgflow.config.model import TableName

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


CLI_TOOL = "pgflow CLI (dagster process)"


def full_refresh(bench: Bench, sink_info: Any) -> None:
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
        for schema in ["psql", "pgflow_cli_full", *(t[1] for t in pgflow_tools)]:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(ORDERS_DDL.format(table=f"{schema}.{SOURCE}"))
    cli_target = TableName("pgflow_cli_full", SOURCE)
    (bench.work / "cli_full").mkdir()
    cli = DagsterCli.set_up(
        bench.work / "cli_full", sink_info, bench.source_uri, bench.sink_uri, SOURCE, cli_target,
        FULL_SPEC,
    )  # fmt: skip
    dlt = Dlt(bench.source_uri, bench.sink_uri, SOURCE, "dlt_full", "replace", bench.work)
    sling = Sling(
        bench.source_uri, bench.sink_uri, SOURCE, "sling_full.orders", "full-refresh", bench.work
    )
    tools: list[Tool] = [
        (LIMIT, PSQL_TARGET, lambda rep: dataclasses.replace(psql_pipe(bench), repetition=rep)),
        *[
            (tool, f"{schema}.{SOURCE}", pgflow_full_refresh(bench, tool, schema, method, streams))
            for tool, schema, method, streams in pgflow_tools
        ],
        (CLI_TOOL, str(cli_target), cli_run(cli, "full_refresh", CLI_TOOL)),
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


# -- incremental ----------------------------------------------------------------------------------


def incremental(bench: Bench, sink_info: Any) -> None:
    print(f"\nincremental merge after 1% of {ROWS:,} rows changed:", flush=True)
    tools = incremental_tools(bench, sink_info)
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


def incremental_tools(bench: Bench, sink_info: Any) -> list[Tool]:
    cli_target = TableName("pgflow_cli", SOURCE)
    (bench.work / "cli").mkdir()
    cli = DagsterCli.set_up(
        bench.work / "cli", sink_info, bench.source_uri, bench.sink_uri, SOURCE, cli_target
    )
    dlt = Dlt(bench.source_uri, bench.sink_uri, SOURCE, "dlt_incr", "merge", bench.work)
    sling = Sling(
        bench.source_uri, bench.sink_uri, SOURCE, "sling_incr.orders", "incremental", bench.work
    )
    return [
        *[
            (
                f"pgflow in-process {policy}",
                f"pgflow_{policy}.{SOURCE}",
                pgflow_merge(bench, policy),
            )
            for policy in MERGE_POLICIES
        ],
        ("pgflow CLI (dagster process)", str(cli_target), cli_run(cli, "incremental", CLI_TOOL)),
        ("dlt merge (pyarrow)", dlt.target, peer_incremental(dlt, "dlt merge (pyarrow)")),
        ("Sling incremental", sling.target, peer_incremental(sling, "Sling incremental")),
    ]


def pgflow_merge(bench: Bench, policy: str) -> Callable[[int], Run]:
    def measure(rep: int) -> Run:
        return pgflow_run(
            "incremental", f"pgflow in-process {policy}", rep, "incremental",
            source=bench.source_uri, sink=bench.sink_uri, table=SOURCE,
            target=[f"pgflow_{policy}", SOURCE], merge_policy=policy,
        )  # fmt: skip

    return measure


def cli_run(cli: DagsterCli, scenario: str, tool: str) -> Callable[[int], Run]:
    """One `dagster asset materialize` of the CLI's spec: the whole process, its load's time."""

    def measure(rep: int) -> Run:
        done, meta = cli.run()
        steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in meta["steps"].items())
        print(f"    the run's steps: {steps}", flush=True)
        return Run(
            scenario, tool, rep, done.wall, int(meta.get("rows_applied", meta["rows_written"])), done.rss_mb, True,
            float(meta["duration_seconds"]),
        )  # fmt: skip

    return measure


def peer_incremental(tool: Dlt | Sling, name: str) -> Callable[[int], Run]:
    def measure(rep: int) -> Run:
        done, rows = tool.run()
        return Run("incremental", name, rep, done.wall, rows or 0, done.rss_mb)

    return measure


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

    from pgflow.sinks.delta.scan import scan_delta_table

    frame = (
        scan_delta_table(path)
        .select(
            pl.len().alias("rows"),
            pl.col("id").sum().alias("ids"),
            pl.col("customer_id").cast(pl.Int64).sum().alias("customers"),
            pl.col("amount").cast(pl.Float64).sum().round(2).alias("amount"),
            pl.col("note").count().alias("notes"),
            pl.col("paid").cast(pl.Int64).sum().alias("paid"),
        )
        .collect()
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

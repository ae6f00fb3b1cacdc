"""The suite's settings (BENCH_*), a measured run, the bench that keeps the runs, pgflow in a
worker process (`suite.py --job`), and the rotation of the tools over the repetitions."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench import bench_report
from bench.common import Finished, checkpoint, checksum, run_tree, tail

ROWS = int(os.environ.get("BENCH_ROWS", "2000000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
CDC_CHANGES = int(os.environ.get("BENCH_CDC_CHANGES", "1000000"))
ALL_SCENARIOS = ("full_refresh", "incremental", "cdc", "delta")
# bench/cdc_group.py (CDC groups on one slot): clusters and results of its own, after the rest.
GROUP_SCENARIO = "cdc_group"
# bench/schema_wide.py (one spec for a whole schema): its own clusters and results too; `make
# bench` runs it after the suite.
SCHEMA_SCENARIO = "schema"
# bench/cdc_delta.py (CDC into Delta next to CDC into Postgres): its own clusters and results.
DELTA_CDC_SCENARIO = "cdc_delta"
# bench/in_dagster.py (pgflow against dagster-sling and dagster-dlt, each a whole Dagster
# process): its own clusters and results.
IN_DAGSTER_SCENARIO = "in_dagster"
_OWN = (GROUP_SCENARIO, SCHEMA_SCENARIO, DELTA_CDC_SCENARIO, IN_DAGSTER_SCENARIO)
_DEFAULT = ",".join((*ALL_SCENARIOS, *_OWN))
_ASKED = tuple(s for s in os.environ.get("BENCH_SCENARIOS", _DEFAULT).split(",") if s)
SCENARIOS = tuple(s for s in _ASKED if s not in _OWN)
RUN_GROUP = GROUP_SCENARIO in _ASKED
RUN_SCHEMA = SCHEMA_SCENARIO in _ASKED
RUN_DELTA_CDC = DELTA_CDC_SCENARIO in _ASKED
RUN_IN_DAGSTER = IN_DAGSTER_SCENARIO in _ASKED
CDC_SCENARIO = os.environ.get("BENCH_SUITE_CDC_SCENARIO", "mixed")
# Tools to run, by the first word of their name (psql, pgflow, dlt, sling, and in_dagster's
# dagster-sling, dagster-dlt); default all.
_ALL_TOOLS = "psql,pgflow,dlt,sling,dagster-sling,dagster-dlt"
TOOLS = tuple(t.lower() for t in os.environ.get("BENCH_TOOLS", _ALL_TOOLS).split(","))
# Server settings for both clusters, "name=value,name=value" (e.g. shared_buffers=2GB,
# random_page_cost=1.1, a warehouse's); default LocalPostgres's. A run with settings gets a
# results section of its own, beside the default one.
SERVER_SETTINGS = dict(
    item.split("=", 1) for item in os.environ.get("BENCH_SERVER_SETTINGS", "").split(",") if item
)
REPO = Path(__file__).resolve().parents[1]
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


Tool = tuple[str, str, Callable[[int], Run]]  # name, target, one measured run


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
    done = run_tree([sys.executable, "-m", "bench.suite", "--job", payload], cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"pgflow {kind} failed:\n{tail(done.stderr)}")
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def pgflow_run(scenario: str, tool: str, repetition: int, kind: str, **settings: Any) -> Run:
    done, figures = job(kind, **settings)
    rss = max(done.rss_mb, figures["peak_mb"] or 0)
    note = "skipped by version" if figures.get("skipped") else figures.get("note", "")
    return Run(
        scenario, tool, repetition, figures["seconds"], figures["rows"], rss, True,
        figures["own"], note,
    )  # fmt: skip


def chosen(
    tools: list[Tool],
) -> list[Tool]:
    """The tools BENCH_TOOLS names."""
    return [tool for tool in tools if tool[0].split()[0].lower() in TOOLS]


def rotate(
    bench: Bench,
    scenario: str,
    tools: list[Tool],
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

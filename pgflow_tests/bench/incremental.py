"""Benchmark (not a test): an incremental run after 1% of an orders table changed, next to dlt.

    make bench                                                # 2,000,000 rows, 3 repetitions
    BENCH_INCREMENTAL_ROWS=100000 BENCH_REPEAT=1 python -m pgflow_tests.bench.incremental

One throwaway local cluster holds the source (`bench_source.public.orders`, 11 columns of
the usual kinds, an index on updated_at) and one sink database where each tool keeps its own
target and its own state:
- pgflow in-process: load_table() with ColumnCursorSource(updated_at) into pgflow.orders,
  incremental_merge delete_insert on id (position stored in _pgflow.pipeline_state);
- pgflow CLI: the whole `dagster asset materialize -m pgflow.definitions` process, a spec
  with incremental_strategy: column, into pgflow_cli.orders (Dagster storage in Postgres);
- dlt: sql_table(incremental=dlt.sources.incremental("updated_at"), backend="pyarrow",
  write_disposition="merge", primary_key="id") into dataset dlt_orders, run by
  peers/dlt_incremental.py in dlt's own venv (.pgflow/bench/dlt-venv, made here on first
  use; never a pgflow dependency). BENCH_DLT_FORMAT picks dlt's loader_file_format
  (default: dlt's default for Postgres, insert_values).

Each tool first loads the whole table (reported as "initial"). Then, BENCH_REPEAT times: 1% of
the rows change (a fresh id residue each time; updated_at = clock_timestamp(), so changed rows
carry distinct cursor values as rows changed by many transactions do), and each tool runs
once, reading what changed since its own stored state; the order of the tools rotates.
Reported: medians of the incremental runs. Wall time is what a user waits for: the in-process
call for pgflow (connect, load, commit), the whole process for the CLI and for dlt.

Before a figure counts, the target must equal the source: same count(*) and the same
order-independent checksum sum(hashtext(ROW(...)::text)) over every source column, projected
to what both sides can hold: dlt stores customer_id as bigint, text and uuid as varchar, the
text[] as jsonb and jsonb as jsonb or json, so the projection casts customer_id to bigint,
text and uuid to text, amount to numeric(12,2), tags to jsonb (to_jsonb on a text[]) and attrs
to jsonb. dlt's own _dlt_load_id/_dlt_id columns are not compared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.localdb.cluster import ClusterInfo
from pgflow.sinks.postgres.load import load_table
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.bench.common import ORDERS_DDL, ORDERS_FILL, throwaway_cluster

ROWS = int(os.environ.get("BENCH_INCREMENTAL_ROWS", "2000000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
DLT_FORMAT = os.environ.get("BENCH_DLT_FORMAT") or None
CHANGED_SHARE = 100  # every 100th row: 1%

REPO = Path(__file__).resolve().parents[2]
DLT_VENV = REPO / ".pgflow" / "bench" / "dlt-venv"
DLT_REQUIREMENTS = ("dlt[postgres,sql-database]==1.31.0", "pyarrow")
DLT_SCRIPT = Path(__file__).with_name("peers") / "dlt_incremental.py"
DAGSTER = str(Path(sys.executable).with_name("dagster"))
SUBPROCESS_TIMEOUT_S = 1800

SOURCE = TableName("public", "orders")
PGFLOW_TARGET = TableName("pgflow", "orders")
CLI_TARGET = TableName("pgflow_cli", "orders")
DLT_DATASET = "dlt_orders"
STRATEGY = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="delete_insert")

# Every source column, in a form both targets can hold (see the module docstring).
COMPARED = (
    "id, customer_id::bigint, status::text, amount::numeric(12,2), note::text, {tags},"
    " attrs::jsonb, created_at, updated_at, paid, ref::text"
)
TAGS_AS_JSONB = {"text[]": "to_jsonb(tags)", "jsonb": "tags::jsonb"}

SPEC_YAML = f"""
source:
  type: postgres
  connection_id: bench_source
  table: {{schema: {SOURCE.schema}, name: {SOURCE.name}}}
  options: {{incremental_strategy: column, incremental_column: updated_at}}
sink:
  type: postgres
  connection_id: bench_sink
  table: {{schema: {CLI_TARGET.schema}, name: {CLI_TARGET.name}}}
  strategy: {{mode: incremental_merge, unique_key: [id], merge_policy: delete_insert}}
"""
# Run in a separate process so the bench process itself never imports Dagster (its RSS is
# pgflow's in-process figure).
CLI_METADATA = """
import json, dagster as dg
with dg.DagsterInstance.get() as instance:
    event = instance.get_latest_materialization_event(dg.AssetKey({key!r}))
    meta = event.asset_materialization.metadata
    print(json.dumps({{k.split("/")[1]: meta[k].value for k in
        ("pgflow/rows_read", "pgflow/rows_applied", "pgflow/duration_seconds", "pgflow/read")}}))
"""


@dataclass
class Run:
    wall: float  # what the user waits for
    rows: int  # rows the tool wrote into its target
    rows_read: int | None = None
    own_seconds: float | None = None  # the tool's own figure for its load, without start-up
    rss_mb: float | None = None
    valid: bool = True


@dataclass
class Tool:
    kind: str  # pgflow, cli or dlt
    name: str
    run: Callable[[], Run]
    target: str  # the table verified against the source
    tags: str  # how the target holds tags
    initial: Run | None = None
    runs: list[Run] = field(default_factory=list)
    failed: str | None = None  # why the tool stopped being measured


# -- measuring ----------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    wall: float
    rss_mb: float  # the largest process of the tree (the child and what it waited for)


def run_process(cmd: list[str], env: dict[str, str], cwd: Path) -> Finished:
    """Run `cmd`; its wall time and its own peak RSS (wait4, not RUSAGE_CHILDREN's maximum)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True
        )
        timer = threading.Timer(SUBPROCESS_TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Finished(proc.returncode, out.read(), err.read(), wall, usage.ru_maxrss / 1024)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


# -- the source ---------------------------------------------------------------------------------


def create_orders(source_uri: str) -> str:
    with psycopg.connect(source_uri, autocommit=True) as conn:
        conn.execute(ORDERS_DDL.format(table="orders"))
        conn.execute(ORDERS_FILL.format(table="orders"), {"lo": 1, "hi": ROWS})
        conn.execute("CREATE INDEX orders_updated_at ON orders (updated_at)")
        conn.execute("VACUUM ANALYZE orders")
        row = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('orders'))").fetchone()
    return row[0] if row else "?"


def change_rows(source_uri: str, repetition: int) -> int:
    """Change 1% of the rows (residue `repetition`: other rows each time); how many changed."""
    with psycopg.connect(source_uri, autocommit=True) as conn:
        cursor = conn.execute(
            "UPDATE orders SET status = %s, amount = amount + 1, updated_at = clock_timestamp()"
            " WHERE id %% %s = %s",
            (f"changed-{repetition}", CHANGED_SHARE, repetition % CHANGED_SHARE),
        )
        return cursor.rowcount


def checksum(uri: str, table: str, tags: str) -> tuple[int, int]:
    projection = COMPARED.format(tags=TAGS_AS_JSONB[tags])
    query = (
        f"SELECT count(*), coalesce(sum(hashtext(ROW({projection})::text)::bigint), 0) FROM {table}"
    )
    with psycopg.connect(uri, options="-c TimeZone=UTC") as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# -- pgflow -------------------------------------------------------------------------------------


def pgflow_in_process(source_uri: str, sink_uri: str) -> Run:
    reset = reset_peak_rss()
    started = time.perf_counter()
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = ColumnCursorSource(src, SOURCE, column="updated_at")
        result = load_table(dst, source, PGFLOW_TARGET, STRATEGY, pipeline="bench")
    wall = time.perf_counter() - started
    return Run(
        wall, result.rows, result.rows_read, result.seconds, peak_rss_mb() if reset else None
    )


@dataclass
class DagsterCli:
    env: dict[str, str]
    home: Path

    @classmethod
    def set_up(cls, work: Path, info: ClusterInfo, source_uri: str, sink_uri: str) -> DagsterCli:
        specs = work / "specs"
        specs.mkdir()
        (specs / "orders.yaml").write_text(SPEC_YAML)
        home = work / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the shipped instance config
        env = {
            **os.environ,
            "PGFLOW_CONFIG": str(specs),
            "PGFLOW_CONN_BENCH_SOURCE": source_uri,
            "PGFLOW_CONN_BENCH_SINK": sink_uri,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": info.host,
            "DAGSTER_PG_PORT": str(info.port),
            "DAGSTER_PG_USER": info.user,
            "DAGSTER_PG_PASSWORD": info.password,
            "DAGSTER_PG_DB": "bench_dagster",
        }
        return cls(env, home)

    def run(self) -> Run:
        key = [CLI_TARGET.schema, CLI_TARGET.name]
        cmd = [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "pgflow.definitions",
            "--select",
            "/".join(key),
        ]
        done = run_process(cmd, self.env, REPO)
        if done.returncode != 0:
            raise RuntimeError(f"dagster asset materialize failed:\n{tail(done.stderr)}")
        meta = subprocess.run(
            [sys.executable, "-c", CLI_METADATA.format(key=key)],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(meta.stdout.strip().splitlines()[-1])
        return Run(
            done.wall,
            figures["rows_applied"],
            figures["rows_read"],
            figures["duration_seconds"],
            done.rss_mb,
        )


# -- dlt ----------------------------------------------------------------------------------------


def dlt_python() -> tuple[Path | None, str]:
    """dlt's own interpreter, making its venv on first use; (None, why) when that fails."""
    python = DLT_VENV / "bin" / "python"
    marker = DLT_VENV / ".installed"
    wanted = " ".join(DLT_REQUIREMENTS)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python, "ready"
    print(f"setting up dlt in {DLT_VENV} (pip install {wanted}) ...", flush=True)
    shutil.rmtree(DLT_VENV, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(DLT_VENV)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *DLT_REQUIREMENTS,
        ],
        [str(python), "-c", "import dlt, pyarrow, psycopg2, sqlalchemy"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[:4])}: {exc}"
        if done.returncode != 0:
            errors = [ln for ln in done.stderr.splitlines() if "WARNING" not in ln]
            return None, f"{' '.join(step[:4])} failed:\n{tail(chr(10).join(errors), 8)}"
    marker.write_text(wanted)
    return python, "installed"


@dataclass
class Dlt:
    python: Path
    settings: dict[str, object]
    work: Path
    version: str = "?"

    def run(self) -> Run:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
        cmd = [str(self.python), str(DLT_SCRIPT), json.dumps(self.settings)]
        done = run_process(cmd, env, self.work)  # cwd: no .dlt/ config of the repo applies
        if done.returncode != 0:
            raise RuntimeError(f"dlt failed:\n{tail(done.stderr)}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        self.version = report["dlt_version"]
        return Run(done.wall, report["rows"], None, report["trace_seconds"], done.rss_mb)


def dlt_unavailable() -> Run:
    raise RuntimeError("dlt is not installed")


# -- the bench ----------------------------------------------------------------------------------


def measure(tool: Tool, sink_uri: str, expected: tuple[int, int]) -> Run | None:
    """One run of `tool`, checked against the source; None (and why) when the tool failed."""
    try:
        run = tool.run()
    except Exception as exc:  # a peer that breaks must not take pgflow's figures with it
        tool.failed = f"{type(exc).__name__}: {exc}"
        print(f"  !! {tool.name} failed; not measured further:\n{tail(str(exc))}", flush=True)
        return None
    got = checksum(sink_uri, tool.target, tool.tags)
    if got != expected:
        run.valid = False
        print(
            f"  !!!!!!!! {tool.name}: target {tool.target} DIFFERS from the source: "
            f"(count, checksum) {got} != {expected}; its figure is INVALID !!!!!!!!",
            flush=True,
        )
    return run


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(tools: list[Tool], changed: int) -> None:
    print(
        f"\nincremental run after 1% of {ROWS:,} rows changed ({changed:,} rows),"
        f" median of {REPEAT}:"
    )
    header = (
        f"  {'tool':<34} {'initial s':>9} {'incr s':>8} {'own s':>7} {'rows':>8}"
        f" {'changed rows/s':>14} {'peak RSS MB':>11} {'x pgflow':>8}"
    )
    print(header)
    base = None
    for tool in tools:
        if tool.failed and not tool.runs:
            print(f"  {tool.name:<34} skipped: {tool.failed.splitlines()[0]}")
            continue
        wall = statistics.median(r.wall for r in tool.runs)
        base = base or wall
        own = [r.own_seconds for r in tool.runs if r.own_seconds is not None]
        rss = [r.rss_mb for r in tool.runs if r.rss_mb is not None]
        rows = statistics.median(r.rows for r in tool.runs)
        flag = "" if all(r.valid for r in tool.runs) else "  INVALID: target differs from source"
        print(
            f"  {tool.name:<34} {fmt(tool.initial.wall if tool.initial else None, '9.2f')}"
            f" {wall:8.2f} {fmt(statistics.median(own) if own else None, '7.2f')}"
            f" {rows:>8,.0f} {changed / wall:>14,.0f} {fmt(max(rss) if rss else None, '11.0f')}"
            f" {wall / base:>7.2f}x{flag}"
        )
    print(
        "  incr s: wall time of the incremental run (pgflow in-process: the call; CLI and dlt:"
        " the whole process).\n  own s: the tool's own figure for the load, without start-up"
        " (pgflow: LoadResult.seconds; dlt: its trace, extract+normalize+load).\n"
        "  peak RSS: pgflow in-process VmHWM of this process during the run; CLI and dlt: the"
        " largest process of the subprocess tree (wait4)."
    )
    walls = {t.kind: statistics.median(r.wall for r in t.runs) for t in tools if t.runs}
    owns = {
        t.kind: statistics.median(r.own_seconds for r in t.runs if r.own_seconds is not None)
        for t in tools
        if t.runs and any(r.own_seconds is not None for r in t.runs)
    }
    if "dlt" not in walls:
        return
    ratios = []
    if "pgflow" in walls:
        ratios.append(f"in-process call / dlt process {walls['pgflow'] / walls['dlt']:.2f}")
    if "cli" in walls:
        ratios.append(f"CLI process / dlt process {walls['cli'] / walls['dlt']:.2f}")
    if "pgflow" in owns and "dlt" in owns:
        ratios.append(f"own load time / dlt's trace {owns['pgflow'] / owns['dlt']:.2f}")
    print(f"  pgflow vs dlt, time ratio (below 1: pgflow faster): {'; '.join(ratios)}")


def main() -> None:
    python, why = dlt_python()
    if python is None:
        print(f"dlt SKIPPED: could not set up its venv: {why}", flush=True)
    databases = ["bench_source", "bench_sink", "bench_dagster"]
    with throwaway_cluster(databases) as info, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source_uri, sink_uri = info.uri("bench_source"), info.uri("bench_sink")
        started = time.perf_counter()
        size = create_orders(source_uri)
        print(
            f"source: {ROWS:,} orders ({size} with indexes), made in"
            f" {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        tools = [
            Tool(
                "pgflow",
                "pgflow in-process",
                lambda: pgflow_in_process(source_uri, sink_uri),
                str(PGFLOW_TARGET),
                "text[]",
            ),
            Tool(
                "cli",
                "pgflow CLI (dagster materialize)",
                DagsterCli.set_up(work, info, source_uri, sink_uri).run,
                str(CLI_TARGET),
                "text[]",
            ),
        ]
        dlt = None
        if python is None:
            tools.append(Tool("dlt", "dlt", dlt_unavailable, "", "", failed=why))
        else:
            settings = {
                "source_uri": source_uri,
                "sink_uri": sink_uri,
                "table": SOURCE.name,
                "dataset": DLT_DATASET,
                "pipelines_dir": str(work / "dlt_pipelines"),
                "file_format": DLT_FORMAT,
            }
            dlt = Dlt(python, settings, work)
            tools.append(Tool("dlt", "dlt", dlt.run, f"{DLT_DATASET}.{SOURCE.name}", "jsonb"))

        expected = checksum(source_uri, str(SOURCE), "text[]")
        print("initial loads (the whole table):", flush=True)
        for tool in tools:
            if tool.failed:
                continue
            tool.initial = measure(tool, sink_uri, expected)
            if tool.initial:
                print(
                    f"  {tool.name:<34} {tool.initial.wall:7.2f} s  {tool.initial.rows:>10,} rows",
                    flush=True,
                )
        if dlt is not None:
            tools[-1].name = f"dlt {dlt.version} ({DLT_FORMAT or 'insert_values'})"

        changed = 0
        for repetition in range(REPEAT):
            changed = change_rows(source_uri, repetition)
            expected = checksum(source_uri, str(SOURCE), "text[]")
            print(f"repetition {repetition + 1}: {changed:,} rows changed", flush=True)
            shift = repetition % len(tools)
            for tool in tools[shift:] + tools[:shift]:  # no tool always goes first
                if tool.failed:
                    continue
                run = measure(tool, sink_uri, expected)
                if run is None:
                    continue
                tool.runs.append(run)
                print(
                    f"  {tool.name:<34} {run.wall:7.2f} s  {run.rows:>10,} rows"
                    f"{'' if run.valid else '  INVALID'}",
                    flush=True,
                )
        report(tools, changed)


if __name__ == "__main__":
    main()

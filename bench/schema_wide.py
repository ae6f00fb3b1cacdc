"""Benchmark (not a test): one spec for a whole schema (issue 22), against Sling, dlt and the
pg_dump | psql pipe.

    python -m bench.schema_wide                         # 200 tables, 2,000,000 rows, 3 runs
    BENCH_SCHEMA_ROWS=200000 BENCH_REPEAT=1 python -m bench.schema_wide     # a quick run

`make bench` runs it after the suite (BENCH_SCENARIOS: `schema`). Two throwaway clusters, as
the suite's: the source, with schema `public` of BENCH_SCHEMA_TABLES (200) tables of mixed
sizes (a geometric spread: a few large, many small) and column types, BENCH_SCHEMA_ROWS
(2,000,000) rows in all, one table without a primary key and a few names with capitals and
spaces (schema_wide_data.py); and the sink. Each tool, as a whole process timed (wall), loads
the whole schema into a target of its own, BENCH_REPEAT (3) times, the order rotating:

- pg_dump | psql, the physical anchor: `pg_dump --data-only --schema=public | psql` into a
  pre-created copy of the DDL (`pg_dump --schema-only`, untimed), in database bench_dump of
  the sink cluster (pg_dump names the schema `public` in its COPY statements), emptied before
  each run (untimed);
- pgflow: ONE wildcard spec (`table: {schema: public, name: "*"}`, full_refresh, keyless
  tables full_refresh too) into schema pgflow_all, run as a user runs it: `dagster asset
  materialize -m pgflow.definitions --select 'key:"pgflow_all/*"'`, with a DAGSTER_HOME whose
  dagster.yaml (the shipped one) sets `concurrency: pools: default_limit: 2` and Dagster's
  storage in a database of the sink cluster. A checkout whose config layer cannot read
  wildcard specs yet (no pgflow/config/catalog_cache.py) gets the same tables as explicit
  specs in one `pipelines:` list instead (BENCH_SCHEMA_SPEC=explicit forces that);
- Sling: a replication of stream `public.*`, mode full-refresh, into schema sling_all;
- dlt: `sql_database()` over the schema (pyarrow backend), write_disposition "replace",
  dataset dlt_all.

After every run each source table's target must hold its row count (a missing or short table
marks the run INVALID; it is never dropped). While a tool runs, the client connections of
the source database and of its target database are polled (schema_wide_data.watch_connections):
their peaks show whether the Dagster pool keeps them bounded. pgflow's code-location load time
(`python -c "import pgflow.definitions"`, after `pgflow specs refresh` where there is one) is
measured too. Results: bench/results-schema.json and the generated section of bench/README.md
(schema_wide_report.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import schema_wide_data as data
from bench import schema_wide_report
from bench.common import checkpoint, run_tree, tail, throwaway_server
from bench.peers import (
    DLT_REQUIREMENTS,
    SLING_REQUIREMENTS,
    clean_env,
    sling_binary,
    venv_python,
    with_sslmode,
)
from bench.schema_wide_data import Outcome, Run, Setting, checked
from bench.schema_wide_pgflow import (
    PARALLEL_TABLES,
    load_times,
    pgflow_prepare,
    pgflow_run,
    spec_mode,
)

ROWS = int(os.environ.get("BENCH_SCHEMA_ROWS", "2000000"))
TABLES = int(os.environ.get("BENCH_SCHEMA_TABLES", "200"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
TOOLS = tuple(
    t for t in os.environ.get("BENCH_SCHEMA_TOOLS", "pg_dump,pgflow,sling,dlt").split(",") if t
)
REPO = Path(__file__).resolve().parents[1]
DLT_SCRIPT = Path(__file__).with_name("schema_wide_dlt.py")
TARGETS = {"pg_dump": "public", "pgflow": "pgflow_all", "sling": "sling_all", "dlt": "dlt_all"}
NAMES = {
    "pg_dump": "pg_dump --data-only | psql",
    "pgflow": "pgflow, one spec (dagster CLI)",
    "sling": "Sling public.* full-refresh",
    "dlt": "dlt sql_database() replace",
}


# -- the tools: each one run, as a whole process ----------------------------------------------


def dump_prepare(s: Setting) -> None:
    """The pre-created copy of the DDL in bench_dump (untimed)."""
    done = subprocess.run(
        ["bash", "-c", 'pg_dump --schema-only --schema=public -d "$SRC" | psql -X -q -d "$DST"'],
        env={**os.environ, "SRC": s.source_uri, "DST": s.sink_uri("bench_dump")},
        capture_output=True,
        text=True,
        check=True,
    )
    made = data.table_count(s.sink_uri("bench_dump"), "public")
    if made != len(s.made):
        raise RuntimeError(f"the schema-only dump made {made} tables:\n{tail(done.stderr)}")


def dump_run(s: Setting) -> Outcome:
    data.clear(s.sink_uri("bench_dump"), "public")
    pipe = (
        'set -o pipefail; pg_dump --data-only --schema=public -d "$SRC"'
        ' | psql -X -q -v ON_ERROR_STOP=1 -d "$DST"'
    )
    env = {**os.environ, "SRC": s.source_uri, "DST": s.sink_uri("bench_dump")}
    return checked("pg_dump | psql", run_tree(["bash", "-c", pipe], env, s.work)), {}


SLING_REPLICATION = """
source: BENCH_SLING_SOURCE
target: BENCH_SLING_TARGET
defaults:
  mode: full-refresh
  object: 'sling_all.{stream_table}'
streams:
  'public.*':
"""


def sling_run(s: Setting) -> Outcome:
    replication = s.work / "sling_replication.yaml"
    replication.write_text(SLING_REPLICATION)
    env = clean_env()
    env["BENCH_SLING_SOURCE"] = with_sslmode(s.source_uri)
    env["BENCH_SLING_TARGET"] = with_sslmode(s.sink_uri())
    env["SLING_HOME_DIR"] = str(s.work / "sling_home")
    cmd = [str(sling_binary()), "run", "-r", str(replication)]
    return checked("sling", run_tree(cmd, env, s.work)), {}


def dlt_run(s: Setting) -> Outcome:
    python = venv_python("dlt-venv", DLT_REQUIREMENTS, "import dlt, pyarrow, psycopg2")
    settings = {
        "source_uri": s.source_uri,
        "sink_uri": s.sink_uri(),
        "schema": "public",
        "dataset": TARGETS["dlt"],
        "pipelines_dir": str(s.work / "dlt_pipelines"),
    }
    cmd = [str(python), str(DLT_SCRIPT), json.dumps(settings)]
    # dlt's default round-robin extract opens every table's reader at once, each on a
    # connection of its own: 200 tables exceed the source's max_connections (100). fifo
    # reads one table after the other (dlt's `extract.next_item_mode`).
    env = {**clean_env(), "EXTRACT__NEXT_ITEM_MODE": "fifo"}
    done = checked("dlt", run_tree(cmd, env, s.work))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    said = f"dlt {report['dlt_version']}: {report['tables']} tables, {report['rows']:,} rows"
    return done, {"note": said}


# -- the measurement --------------------------------------------------------------------------


def measure(s: Setting, tool: str, rep: int, run: Callable[[Setting], Outcome]) -> None:
    sink_db = "bench_dump" if tool == "pg_dump" else "bench_sink"
    checkpoint(s.source_uri, s.sink_uri(sink_db))
    watched = {
        "source": (s.source.uri("postgres"), "bench_source"),
        "sink": (s.sink.uri("postgres"), sink_db),
    }
    with data.watch_connections(watched) as peaks:
        done, said = run(s)
    problems = data.mismatches(s.sink_uri(sink_db), TARGETS[tool], s.made)
    shown = problems[:5] + ([f"+{len(problems) - 5} more"] if len(problems) > 5 else [])
    shown += _mentions(done.stdout + done.stderr, problems[:3])
    result = Run(
        tool, rep, done.wall, sum(t.rows for t in s.made), done.rss_mb, not problems,
        peaks.counts["source"], peaks.counts["sink"],
        "; ".join([*shown, said["note"]] if "note" in said else shown),
        said.get("own_s"), said,
    )  # fmt: skip
    s.runs.append(result)
    print(
        f"  {NAMES[tool]:<34} {done.wall:8.2f} s  peak {done.rss_mb:5.0f} MB  connections"
        f" source {result.source_conns} sink {result.sink_conns}"
        f"{'' if result.valid else '  INVALID'}{'  ' + result.note if result.note else ''}",
        flush=True,
    )


def _mentions(log: str, problems: list[str]) -> list[str]:
    """What the tool's own output says of the tables that failed the check (two lines each)."""
    lines = log.splitlines()
    said = []
    for problem in problems:
        name = problem.split(":", 1)[0]
        said += [f"log: {line.strip()[:300]}" for line in lines if name in line][:2]
    return said


def rotate(s: Setting, tools: dict[str, Callable[[Setting], Outcome]]) -> None:
    """Each tool REPEAT times, their order rotating; a tool that fails is not run again."""
    names = [t for t in TOOLS if t in tools]
    failed: set[str] = set()
    for rep in range(REPEAT):
        print(f" repetition {rep + 1} of {REPEAT}", flush=True)
        shift = rep % len(names)
        for tool in names[shift:] + names[:shift]:
            if tool in failed:
                continue
            try:
                measure(s, tool, rep, tools[tool])
            except Exception as exc:  # a broken tool must not take the other figures with it
                failed.add(tool)
                reason = f"{type(exc).__name__}: {exc}"
                s.failures.append({"tool": tool, "reason": reason})
                print(f"  !! {tool} failed; not run again:\n{tail(reason)}", flush=True)


def main() -> None:
    from bench.suite import machine

    unknown = set(TOOLS) - set(TARGETS)
    if unknown:
        raise SystemExit(f"BENCH_SCHEMA_TOOLS: unknown {sorted(unknown)}; known {list(TARGETS)}")
    started = time.time()
    mode = spec_mode()
    with (
        throwaway_server(["bench_source"]) as (_, source),
        throwaway_server(["bench_sink", "bench_dagster", "bench_dump"]) as (_, sink),
        tempfile.TemporaryDirectory(prefix="pgflow-bench-schema-") as tmp,
    ):
        made = data.tables(TABLES, ROWS)
        s = Setting(source, sink, Path(tmp), made)
        clock = time.perf_counter()
        data.create_schema(s.source_uri, made)
        size = data.schema_bytes(s.source_uri)
        print(
            f"source: {len(made)} tables, {ROWS:,} rows ({made[0].rows:,} in the largest,"
            f" {made[-1].rows:,} in the smallest), {size / 2**20:,.0f} MB, made in"
            f" {time.perf_counter() - clock:.0f} s; pgflow spec: {mode}; {REPEAT} repetition(s)",
            flush=True,
        )
        dump_prepare(s)
        env = pgflow_prepare(s, mode)
        loading = load_times(s, env, mode, REPEAT) if "pgflow" in TOOLS else {}
        tools = {"pg_dump": dump_run, "pgflow": pgflow_run(env), "sling": sling_run, "dlt": dlt_run}
        rotate(s, tools)
        results = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
            "duration_s": round(time.time() - started),
            "machine": machine(s.source_uri),
            "rows": ROWS,
            "tables": len(made),
            "largest_rows": made[0].rows,
            "smallest_rows": made[-1].rows,
            "source_bytes": size,
            "repeat": REPEAT,
            "spec": mode,
            "parallel_tables": PARALLEL_TABLES or "default",
            "pool_default_limit": 2,
            "tools": list(TOOLS),
            "names": NAMES,
            "peers": {"dlt": list(DLT_REQUIREMENTS), "sling": list(SLING_REQUIREMENTS)},
            "load_time": loading,
            "runs": [dataclasses.asdict(r) for r in s.runs],
            "failures": s.failures,
        }
    schema_wide_report.publish(results)


if __name__ == "__main__":
    from bench.runs import RUN_SCHEMA

    # --if-asked (make bench): only when BENCH_SCENARIOS names `schema` (its default does).
    if sys.argv[1:2] != ["--if-asked"] or RUN_SCHEMA:
        main()

"""pgflow in the schema-wide bench (bench/schema_wide.py), as a user runs it: ONE wildcard spec
(or, on a checkout whose config layer cannot read wildcards, the same tables as explicit specs
in one `pipelines:` list), its table cache, the code location's load time, and the whole
`dagster asset materialize` process with a DAGSTER_HOME of its own."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import schema_wide_data as data
from bench.common import run_tree
from bench.schema_wide_data import Outcome, Setting, checked

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
PGFLOW = str(Path(sys.executable).with_name("pgflow"))
SELECT = 'key:"pgflow_all/*"'
# The spec's `parallel_tables` (tables its step loads at once); unset: the spec's default.
PARALLEL_TABLES = os.environ.get("BENCH_SCHEMA_PARALLEL_TABLES", "")


WILDCARD_SPEC = """{parallel}source:
  type: postgres
  connection_id: bench_source
  table: {{schema: public, name: "*"}}
  options: {{keyless: full_refresh}}
sink:
  type: postgres
  connection_id: bench_sink
  table: {{schema: pgflow_all}}
  strategy: {{mode: full_refresh}}
"""
EXPLICIT_ENTRY = """- source:
    type: postgres
    connection_id: bench_source
    table: {{schema: public, name: {name}}}
  sink:
    type: postgres
    connection_id: bench_sink
    table: {{schema: pgflow_all, name: {name}}}
    strategy: {{mode: full_refresh}}
"""


def spec_mode() -> str:
    """`wildcard` when the config layer reads wildcard specs, else `explicit`."""
    asked = os.environ.get("BENCH_SCHEMA_SPEC", "")
    if asked:
        return asked
    return "wildcard" if (REPO / "pgflow/config/catalog_cache.py").exists() else "explicit"


def pgflow_prepare(s: Setting, mode: str) -> dict[str, str]:
    """The spec folder and DAGSTER_HOME under the work folder: the CLI's environment."""
    specs = s.work / "specs"
    specs.mkdir()
    parallel = f"parallel_tables: {PARALLEL_TABLES}\n" if PARALLEL_TABLES else ""
    if mode == "wildcard":
        text = WILDCARD_SPEC.format(parallel=parallel)
    else:
        entries = [EXPLICIT_ENTRY.format(name=json.dumps(t.name)) for t in s.made]
        text = "pipelines:\n" + "".join(entries)
    (specs / "schema.yaml").write_text(text)
    home = s.work / "dagster_home"
    home.mkdir()
    # The shipped instance config: Postgres storage, `concurrency: pools: default_limit: 2`.
    shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "PGFLOW_CONFIG": str(specs),
        "PGFLOW_CONN_BENCH_SOURCE": s.source_uri,
        "PGFLOW_CONN_BENCH_SINK": s.sink_uri(),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": s.sink.host,
        "DAGSTER_PG_PORT": str(s.sink.port),
        "DAGSTER_PG_USER": s.sink.user,
        "DAGSTER_PG_PASSWORD": s.sink.password,
        "DAGSTER_PG_DB": "bench_dagster",
    }


def load_times(s: Setting, env: dict[str, str], mode: str, repeat: int) -> dict[str, Any]:
    """The wildcard's table cache (`pgflow specs refresh` where the CLI has it, else written
    by the bench from the source catalog), then the code location's import, timed `repeat` times
    as a whole process."""
    refresh = run_tree([PGFLOW, "specs", "refresh"], env, REPO)
    cache = "pgflow specs refresh" if refresh.returncode == 0 else "none (explicit specs)"
    if refresh.returncode != 0 and mode == "wildcard":
        from pgflow.config.catalog_cache import write_cache

        write_cache(
            Path(env["PGFLOW_CONFIG"]) / "schema.yaml", [data.listing(s.source_uri, "bench_source")]
        )
        cache = "written by the bench (no `pgflow specs refresh` in this checkout)"
    imports = []
    for _ in range(max(repeat, 1)):
        done = run_tree([sys.executable, "-c", "import pgflow.definitions"], env, REPO)
        checked("import pgflow.definitions", done)
        imports.append(done.wall)
    return {
        "cache": cache,
        "refresh_s": refresh.wall if refresh.returncode == 0 else None,
        "import_s": imports,
        "import_median_s": statistics.median(imports),
    }


# The run's steps, read in a process of its own (the bench process never imports Dagster).
STEPS = """
import json, dagster as dg
with dg.DagsterInstance.get() as instance:
    run = instance.get_runs(limit=1)[0]
    started, steps = {}, {}
    for entry in instance.all_logs(run.run_id):
        kind = entry.dagster_event_type
        if kind == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS and entry.step_key in started:
            steps[entry.step_key] = round(entry.timestamp - started[entry.step_key], 2)
    print(json.dumps(steps))
"""


def step_figures(steps: dict[str, float]) -> dict[str, Any]:
    """The run's load steps (own_s: their seconds, summed) and its check steps."""
    # A pipeline's own `<name>_checks`, or a schema-wide spec's shared `<where>__checks_<i>`.
    checks = {k: v for k, v in steps.items() if "_checks" in k}
    loads = {k: v for k, v in steps.items() if k not in checks}
    return {
        "own_s": sum(loads.values()),
        "load_steps": len(loads),
        "check_steps": len(checks),
        "check_step_s": round(sum(checks.values()), 2),
        "note": f"{len(loads)} load step(s) {sum(loads.values()):.1f} s,"
        f" {len(checks)} check step(s) {sum(checks.values()):.1f} s",
    }


def pgflow_run(env: dict[str, str]) -> Callable[[Setting], Outcome]:
    def run(s: Setting) -> Outcome:
        cmd = [DAGSTER, "asset", "materialize", "-m", "pgflow.definitions", "--select", SELECT]
        done = checked("dagster asset materialize", run_tree(cmd, env, REPO))
        read = subprocess.run(
            [sys.executable, "-c", STEPS], env=env, cwd=REPO, capture_output=True, text=True
        )
        steps: dict[str, float] = json.loads(read.stdout.strip().splitlines()[-1])
        return done, step_figures(steps)

    return run

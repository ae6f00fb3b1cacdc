"""Benchmark (not a test): how long a code location of many pipelines takes to load.

    python -m bench.definitions_load                              # 1,000 and 10,000 pipelines
    BENCH_DEFS_PIPELINES=1000 BENCH_DEFS_REPEAT=5 python -m bench.definitions_load

For each size N, two code locations are written to a temporary folder: one spec file of N
explicit pipelines (incremental merges from `shop` into `warehouse`, each with its checks),
and one schema-wide spec whose table cache lists N keyed tables. A fresh Python process loads
each as `dagster dev` does: `import pgflow.definitions` and `defs.get_repository_def()`. No
database is reached (loading never connects). Reported per code location: the medians of BENCH_DEFS_REPEAT (default 3) runs of the whole process, wall and CPU
time (CPU is steadier when the machine is busy), then one more run's phases (import dagster,
import pgflow, load_project, build_definitions, resolving the repository) and peak memory.
Issue 22's bar: 1,000 pipelines under 3 s; 10,000 still load.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = [int(n) for n in os.environ.get("BENCH_DEFS_PIPELINES", "1000,10000").split(",")]
REPEAT = int(os.environ.get("BENCH_DEFS_REPEAT", "3"))

# The measured process: the code location as Dagster loads it.
WHOLE = "import pgflow.definitions as d; d.defs.get_repository_def()"

# One more process, for the phases: what pgflow/definitions.py does, step by step.
PHASES = """
import json, resource, time
from contextlib import nullcontext
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
import pgflow.bindings.definitions as bindings
from pgflow.config.loader import load_project
t2 = time.perf_counter()
with getattr(bindings, "collector_paused", nullcontext)():  # absent before issue 22
    project = load_project()
    t3 = time.perf_counter()
    defs = bindings.build_definitions(project)
    t4 = time.perf_counter()
    repo = defs.get_repository_def()
    t5 = time.perf_counter()
print(json.dumps({
    "import dagster": t1 - t0, "import pgflow": t2 - t1, "load_project": t3 - t2,
    "build_definitions": t4 - t3, "get_repository_def": t5 - t4,
    "assets": len(repo.asset_graph.materializable_asset_keys),
    "checks": len(repo.asset_graph.asset_check_keys),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


CONNECTIONS = "connections: {shop: {type: env}, warehouse: {type: env}}\n"


def explicit_specs(folder: Path, pipelines: int) -> Path:
    """One file of `pipelines` explicit incremental merges, one per table."""
    lines = [CONNECTIONS + "pipelines:"]
    for i in range(pipelines):
        lines.append(
            f"  - source: {{type: postgres, connection_id: shop, table: {{schema: public, "
            f"name: t{i}}}, options: {{incremental_strategy: column, "
            f"incremental_column: updated_at}}}}"
        )
        lines.append(
            f"    sink: {{type: postgres, connection_id: warehouse, table: {{schema: landing, "
            f"name: t{i}}}, strategy: {{mode: incremental_merge, unique_key: [id], "
            f"merge_policy: upsert}}}}"
        )
    spec = folder / f"explicit_{pipelines}.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


def wildcard_spec(folder: Path, tables: int) -> Path:
    """One schema-wide spec and its table cache of `tables` keyed tables (no source listed)."""
    spec = folder / f"schema_{tables}.yaml"
    spec.write_text(
        CONNECTIONS
        + "source: {type: postgres, connection_id: shop, table: {schema: public, name: '*'}}\n"
        "sink: {type: postgres, connection_id: warehouse, table: {schema: landing},"
        " strategy: {mode: incremental_merge, merge_policy: upsert}}\n"
    )
    listing = {
        "connection_id": "shop",
        "exists": True,
        "listed_at": "2026-12-04T00:00:00+00:00",
        "schema": "public",
        "tables": [{"key": ["id"], "kind": "table", "name": f"t{i}"} for i in range(tables)],
    }
    document = {"format": "pgflow.tables/1", "listings": [listing]}
    spec.with_name(f"{spec.stem}.tables.json").write_text(json.dumps(document))
    return spec


def run(spec: Path, code: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of a fresh interpreter running `code`."""
    env = {
        **os.environ,
        "PGFLOW_CONFIG": str(spec),
        "PGFLOW_CONN_SHOP": "postgresql://bench@localhost/shop",
        "PGFLOW_CONN_WAREHOUSE": "postgresql://bench@localhost/warehouse",
    }
    before, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"loading {spec} failed:\n{done.stderr[-3000:]}")
    return wall, _children_cpu() - before, done.stdout


def _children_cpu() -> float:
    """CPU seconds of finished child processes: on a busy machine, steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(what: str, spec: Path) -> None:
    runs = [run(spec, WHOLE)[:2] for _ in range(REPEAT)]
    walls, cpus = sorted(w for w, _ in runs), sorted(c for _, c in runs)
    print(
        f"{what}: {statistics.median(walls):.2f} s wall, "
        f"{statistics.median(cpus):.2f} s CPU (median of {REPEAT}; wall "
        + ", ".join(f"{w:.2f}" for w in walls)
        + ")"
    )
    *_, out = run(spec, PHASES)
    phases: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    counts = {name: phases.pop(name) for name in ("assets", "checks", "peak_mb")}
    print("         " + ", ".join(f"{name} {s:.2f}" for name, s in phases.items()))
    print(
        f"         {counts['assets']:.0f} assets, {counts['checks']:.0f} checks, "
        f"peak {counts['peak_mb']:.0f} MB",
        flush=True,
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pgflow-defs-") as folder:
        for size in SIZES:
            measure(f"{size:>6} explicit pipelines", explicit_specs(Path(folder), size))
            measure(f"{size:>6} tables of one wildcard", wildcard_spec(Path(folder), size))


if __name__ == "__main__":
    main()

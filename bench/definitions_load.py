"""Benchmark (not a test): how long a code location of many pipelines takes to load.

    python -m bench.definitions_load                              # 1,000 and 10,000 pipelines
    BENCH_DEFS_PIPELINES=1000 BENCH_DEFS_REPEAT=5 python -m bench.definitions_load

For each size, one spec file of N explicit pipelines (an incremental merge from `shop` into
`warehouse`, each with its checks) is written to a temporary folder, and a fresh Python
process loads the code location as `dagster dev` does: `import pgflow.definitions` and
`defs.get_repository_def()`. No database is reached (loading never connects). Reported per
size: the median of BENCH_DEFS_REPEAT (default 3) runs of the whole process's wall time, that
run's CPU time (steadier when the machine is busy), its phases (import dagster, import
pgflow, load_project, build_definitions, resolving the repository) and peak memory. Issue 22's bar: 1,000 pipelines under 3 s; 10,000 load.
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

# Runs in the measured process: the phases of `import pgflow.definitions`, done by hand.
PHASES = """
import json, resource, sys, time
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
t2 = time.perf_counter()
project = load_project()
t3 = time.perf_counter()
defs = build_definitions(project)
t4 = time.perf_counter()
repo = defs.get_repository_def()
t5 = time.perf_counter()
assets = len(repo.asset_graph.materializable_asset_keys)
checks = len(repo.asset_graph.asset_check_keys)
print(json.dumps({
    "import dagster": t1 - t0, "import pgflow": t2 - t1, "load_project": t3 - t2,
    "build_definitions": t4 - t3, "get_repository_def": t5 - t4,
    "assets": assets, "checks": checks,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def spec_text(pipelines: int) -> str:
    lines = ["connections: {shop: {type: env}, warehouse: {type: env}}", "pipelines:"]
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
    return "\n".join(lines) + "\n"


def one_run(spec: Path) -> tuple[float, dict[str, float]]:
    env = {
        **os.environ,
        "PGFLOW_CONFIG": str(spec),
        "PGFLOW_CONN_SHOP": "postgresql://bench@localhost/shop",
        "PGFLOW_CONN_WAREHOUSE": "postgresql://bench@localhost/warehouse",
    }
    before, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PHASES], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"loading {spec} failed:\n{done.stderr[-3000:]}")
    phases: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    phases["cpu"] = _children_cpu() - before
    return wall, phases


def _children_cpu() -> float:
    """CPU seconds of finished child processes: on a busy machine, steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(pipelines: int, folder: Path) -> None:
    spec = folder / f"pipelines_{pipelines}.yaml"
    spec.write_text(spec_text(pipelines))
    runs = sorted((one_run(spec) for _ in range(REPEAT)), key=lambda run: run[0])
    wall, phases = runs[len(runs) // 2]
    walls = ", ".join(f"{w:.2f}" for w, _ in runs)
    print(f"{pipelines:>6} pipelines: {wall:.2f} s whole process (median of {REPEAT}: {walls})")
    cpus = ", ".join(f"{run[1]['cpu']:.2f}" for run in runs)
    counts = {name: phases.pop(name) for name in ("assets", "checks", "peak_mb", "cpu")}
    print(f"         CPU {counts['cpu']:.2f} s (runs: {cpus})")
    for name, seconds in phases.items():
        print(f"         {name:<20} {seconds:.2f} s")
    print(
        f"         {counts['assets']:.0f} assets, {counts['checks']:.0f} checks, peak "
        f"{counts['peak_mb']:.0f} MB; spread {statistics.pstdev(w for w, _ in runs):.2f} s",
        flush=True,
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pgflow-defs-") as folder:
        for pipelines in SIZES:
            measure(pipelines, Path(folder))


if __name__ == "__main__":
    main()

"""pgflow as a user runs it: the whole `dagster asset materialize -m pgflow.definitions` process
for one spec (INCREMENTAL_SPEC: incremental_strategy column on updated_at, incremental_merge
upsert on id; FULL_SPEC: full_refresh with the default method), with Dagster's storage in a
Postgres database of the bench cluster; the load's own figures read back from the
materialization's metadata."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Finished, run_tree, tail
from pgflow.config.model import TableName
from pgflow.localdb.cluster import ClusterInfo

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))

SPEC_YAML = """
source:
  type: postgres
  connection_id: bench_source
  table: {{schema: public, name: {table}}}
  {options}
sink:
  type: postgres
  connection_id: bench_sink
  table: {{schema: {target.schema}, name: {target.name}}}
  strategy: {strategy}
"""
INCREMENTAL_SPEC = (
    "options: {incremental_strategy: column, incremental_column: updated_at}",
    "{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
)
FULL_SPEC = ("", "{mode: full_refresh}")  # the defaults a user gets
# Read in a process of its own: the bench process never imports Dagster.
# `steps`: each step of the run from its start to its success (the asset's, which runs its
# checks; a checks op's where there is one); `checks_in_step`: in the asset's step, from the
# IO manager's end (HANDLED_OUTPUT) to the step's success: its checks.
METADATA = """
import json, dagster as dg
with dg.DagsterInstance.get() as instance:
    event = instance.get_latest_materialization_event(dg.AssetKey({key!r}))
    meta = event.asset_materialization.metadata
    figures = {{k.split("/")[1]: meta[k].value for k in
        ("pgflow/rows_written", "pgflow/rows_read", "pgflow/rows_applied",
         "pgflow/duration_seconds") if k in meta}}
    started, steps, handled, checks = {{}}, {{}}, None, None
    for entry in instance.all_logs(event.run_id):
        kind = entry.dagster_event_type
        if kind == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif kind == dg.DagsterEventType.HANDLED_OUTPUT and entry.step_key == event.step_key:
            handled = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS and entry.step_key in started:
            steps[entry.step_key] = round(entry.timestamp - started[entry.step_key], 2)
            if entry.step_key == event.step_key and handled is not None:
                checks = round(entry.timestamp - handled, 2)
    print(json.dumps({{**figures, "steps": steps, "checks_in_step": checks}}))
"""


@dataclass
class DagsterCli:
    env: dict[str, str]
    target: TableName

    @classmethod
    def set_up(
        cls,
        work: Path,
        sink: ClusterInfo,
        source_uri: str,
        sink_uri: str,
        table: str,
        target: TableName,
        spec: tuple[str, str] = INCREMENTAL_SPEC,
    ) -> DagsterCli:
        """Specs and a DAGSTER_HOME in `work`; Dagster's storage in sink's bench_dagster."""
        compile_pgflow()
        specs = work / "specs"
        specs.mkdir()
        (specs / f"{table}.yaml").write_text(
            SPEC_YAML.format(table=table, target=target, options=spec[0], strategy=spec[1])
        )
        home = work / "dagster_home"
        home.mkdir()
        shutil.copy(
            REPO / "instance" / "dagster.yaml", home / "dagster.yaml"
        )  # the shipped instance config
        env = {
            **os.environ,
            "PGFLOW_CONFIG": str(specs),
            "PGFLOW_CONN_BENCH_SOURCE": source_uri,
            "PGFLOW_CONN_BENCH_SINK": sink_uri,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": sink.host,
            "DAGSTER_PG_PORT": str(sink.port),
            "DAGSTER_PG_USER": sink.user,
            "DAGSTER_PG_PASSWORD": sink.password,
            "DAGSTER_PG_DB": "bench_dagster",
        }
        return cls(env, target)

    def run(self) -> tuple[Finished, dict[str, Any]]:
        """One materialization: the finished process and pgflow's metadata (rows_written,
        duration_seconds; an incremental run's rows_read and rows_applied), with the run's
        `steps` and their seconds."""
        key = [self.target.schema, self.target.name]
        cmd = [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "pgflow.definitions",
            "--select",
            "/".join(key),
        ]
        done = run_tree(cmd, self.env, REPO)
        if done.returncode != 0:
            raise RuntimeError(f"dagster asset materialize failed:\n{tail(done.stderr)}")
        meta = subprocess.run(
            [sys.executable, "-c", METADATA.format(key=key)],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return done, json.loads(meta.stdout.strip().splitlines()[-1])


def compile_pgflow() -> None:
    """pgflow's bytecode, as pip writes it for the peers' packages when it installs them: an
    editable install under PYTHONDONTWRITEBYTECODE would compile every module in every run
    (about 0.07 s of each)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "pgflow")], check=True)

"""`pgflow report`: where each pipeline's data went, read from the sinks themselves, and each
one's last run as Dagster recorded it (report_metrics.py)."""

from __future__ import annotations

import argparse

import psycopg
from psycopg import sql

from pgflow.config.loader import load_project
from pgflow.config.model import PipelineSpec, Project
from pgflow.connections.delta_storage import storage_options_from_env
from pgflow.connections.resource import PostgresConnections, with_sessions
from pgflow.connections.secrets import ConnectionConfigError
from pgflow.report_metrics import describe_metrics, last_runs, open_instance
from pgflow.sinks.postgres.state import read_position
from pgflow.sources.table_listing import live_lister


def describe_target(
    connections: PostgresConnections, project: Project, pipeline: PipelineSpec
) -> str:
    if pipeline.sink.type == "delta":
        group = project.cdc_group_of(pipeline.name)
        slot = group.slot_name if group else None
        return describe_delta_target(pipeline, storage_options_from_env(), slot)
    sink = pipeline.sink
    assert sink.connection_id and sink.table
    where = f"{sink.connection_id}:{sink.table}"
    try:
        with connections.connect(sink.connection_id, sink.connection_type) as conn:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sink.table.identifier())
            ).fetchone()
            position = read_position(conn, sink.table)
            params = conn.info.get_parameters()
            location = f"{params.get('host', '?')}:{params.get('port', '?')}/{conn.info.dbname}"
    except (ConnectionConfigError, psycopg.Error) as exc:
        detail = " ".join(str(exc).split())  # one line: Postgres errors carry LINE/caret lines
        return f"{'/'.join(pipeline.asset_key):<28} -> {where}: unavailable ({detail})"
    rows = count[0] if count else 0
    text = f"{'/'.join(pipeline.asset_key):<28} -> {location} {sink.table}: {rows:,} rows"
    if position is not None:
        text += f"; {position.kind} position {position.value}"
    return text


def describe_delta_target(
    pipeline: PipelineSpec, storage_options: dict[str, str] | None, slot: str | None = None
) -> str:
    """A Delta target's rows and version, and for CDC (`slot`: its group's) the LSN its last
    commit carries (deltalake is imported here: only when a Delta target exists)."""
    from deltalake.exceptions import DeltaError

    from pgflow.flows.cdc.model import position_source
    from pgflow.sinks.delta.cdc_state import stored_lsn
    from pgflow.sinks.delta.table import open_table
    from pgflow.sources.delta import open_snapshot
    from pgflow.sources.pgoutput import lsn_to_text

    path, label = pipeline.sink.path, "/".join(pipeline.asset_key)
    assert path
    try:
        snapshot = open_snapshot(path, None, storage_options)
    except (DeltaError, OSError, ValueError) as exc:
        return f"{label:<28} -> {path}: unavailable ({type(exc).__name__}: {exc})"
    rows = f"{snapshot.rows:,} rows" if snapshot.rows is not None else "rows not in the log"
    text = f"{label:<28} -> {path}: {rows}, Delta version {snapshot.version}"
    if slot is not None and pipeline.source.table is not None:
        identity = position_source(pipeline.source.table, slot)
        lsn = stored_lsn(open_table(path, storage_options), pipeline.name, identity)
        if lsn is not None:
            text += f"; cdc position {lsn_to_text(lsn)}"
    return text


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pgflow report", description=__doc__)
    parser.add_argument(
        "--config", help="spec file or folder (default: $PGFLOW_CONFIG or ./pipelines)"
    )
    args = parser.parse_args(argv)
    project = load_project(args.config, lister=live_lister())
    connections = with_sessions(project.connections)
    instance = open_instance()
    runs = instance if isinstance(instance, str) else last_runs(instance, project.pipelines)
    print(f"pgflow: {len(project.pipelines)} pipeline(s); targets now hold:")
    for pipeline in project.pipelines:
        print("  " + describe_target(connections, project, pipeline))
        if not isinstance(runs, str):
            print("\n".join(describe_metrics(runs, pipeline)))
    if isinstance(runs, str):
        print(runs)
    if not isinstance(instance, str):
        instance.dispose()
    return 0

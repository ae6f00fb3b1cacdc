"""`pgflow report`: where each pipeline's data went, read from the sinks themselves."""

from __future__ import annotations

import argparse

import psycopg
from psycopg import sql

from pgflow.config.loader import load_project
from pgflow.config.model import PipelineSpec
from pgflow.connections.resource import PostgresConnections
from pgflow.connections.secrets import ConnectionConfigError
from pgflow.sinks.postgres.state import read_position
from pgflow.sources.table_listing import live_lister


def describe_target(connections: PostgresConnections, pipeline: PipelineSpec) -> str:
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
        return f"{'/'.join(pipeline.asset_key):<28} -> {where}: unavailable ({exc})"
    rows = count[0] if count else 0
    text = f"{'/'.join(pipeline.asset_key):<28} -> {location} {sink.table}: {rows:,} rows"
    if position is not None:
        text += f"; {position.kind} position {position.value}"
    return text


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pgflow report", description=__doc__)
    parser.add_argument(
        "--config", help="spec file or folder (default: $PGFLOW_CONFIG or ./pipelines)"
    )
    args = parser.parse_args(argv)
    project = load_project(args.config, lister=live_lister())
    connections = PostgresConnections()
    print(f"pgflow: {len(project.pipelines)} pipeline(s); targets now hold:")
    for pipeline in project.pipelines:
        print("  " + describe_target(connections, pipeline))
    return 0

"""Staging tables committed outside a load's transaction (CDC's overlapped staging) are
tagged with their backend; a later run of the same target drops those whose backend is gone,
and nothing else."""

from __future__ import annotations

import psycopg

from pgflow.config.model import TableName
from pgflow.sinks.postgres import staging
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow_tests.pg import execute, fetch

TARGET = TableName("landing", "payments")
OTHER = TableName("archive", "payments")


def committed_staging(uri: str, target: TableName) -> TableName:
    """A tagged staging table whose backend has ended, as a killed run leaves it."""
    with psycopg.connect(uri, autocommit=True) as killed:
        stage = staging.create_staging(SqlLog(killed), target, ("id", "v"))
        staging.mark_committed_staging(SqlLog(killed), stage, target)
    return stage


def test_a_dead_backends_staging_is_dropped_and_others_kept(sink_uri: str) -> None:
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.payments (id int, v text);"
        "CREATE SCHEMA archive; CREATE TABLE archive.payments (id int, v text)",
    )
    committed_staging(sink_uri, TARGET)
    other_targets = committed_staging(sink_uri, OTHER)
    with psycopg.connect(sink_uri, autocommit=True) as running:
        live = staging.create_staging(SqlLog(running), TARGET, ("id", "v"))
        staging.mark_committed_staging(SqlLog(running), live, TARGET)
        with psycopg.connect(sink_uri, autocommit=True) as next_run:
            dropped = staging.drop_orphaned_staging(SqlLog(next_run), TARGET)
        left = fetch(
            sink_uri,
            "SELECT relname FROM pg_class WHERE relnamespace = '_pgflow_staging'::regnamespace"
            " ORDER BY relname",
        )
    assert dropped == 1
    assert sorted(left) == sorted([(live.name,), (other_targets.name,)])

"""What the checks of one run share: the connections, the clock, the result they build, and
how they name the source and the target in their texts."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Literal

import dagster as dg
import psycopg

from pgflow.bindings.assets import asset_key
from pgflow.config.model import PipelineSpec
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections

COUNT_TIMEOUT_SECONDS = 60

WARN = dg.AssetCheckSeverity.WARN
ERROR = dg.AssetCheckSeverity.ERROR

# What time it is for the freshness rule: a parameter so tests can move it, not sleep.
Clock = Callable[[], float]

# What the run did to the asset before its checks: nothing (a run of checks only: on demand,
# the scan job), a load that read the whole source table, or an incremental load.
RunLoad = Literal["none", "whole", "incremental"]


class CheckRun:
    """What the checks of one run share: the connections, opened on first use and closed with
    the run, the Delta storage options and the clock.

    Connections are autocommit plus READ ONLY: each probe runs in its own short `BEGIN READ ONLY`
    transaction, and nothing stays idle in a transaction between probes.
    """

    def __init__(
        self,
        pipeline: PipelineSpec,
        pg: PostgresConnections,
        delta: DeltaStorage,
        stack: ExitStack,
        clock: Clock = time.time,
        load: RunLoad = "none",
    ):
        self.pipeline, self._pg, self._stack, self.clock = pipeline, pg, stack, clock
        self.load = load
        self.storage_options = delta.storage_options()
        self._open: dict[str, psycopg.Connection] = {}

    def source(self) -> psycopg.Connection:
        source = self.pipeline.source
        assert source.connection_id
        return self._connect("source", source.connection_id, source.connection_type)

    def target(self) -> psycopg.Connection:
        sink = self.pipeline.sink
        assert sink.connection_id
        return self._connect("target", sink.connection_id, sink.connection_type)

    def open_postgres_sides(self) -> None:
        """Opens the Postgres connections now: the run's ExitStack is not shared between
        threads, so a probe in a thread must find its connection open."""
        if self.pipeline.source.type == "postgres":
            self.source()
        if self.pipeline.sink.type == "postgres":
            self.target()

    def _connect(self, role: str, connection_id: str, connection_type: str) -> psycopg.Connection:
        if role not in self._open:
            conn = self._stack.enter_context(
                self._pg.connect(connection_id, connection_type, autocommit=True)
            )
            conn.read_only = True
            self._open[role] = conn
        return self._open[role]


def result(
    pipeline: PipelineSpec,
    name: str,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str,
    metadata: dict[str, Any] | None = None,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key(pipeline),
        check_name=name,
        passed=passed,
        severity=severity,
        description=description,
        metadata={k: v for k, v in (metadata or {}).items() if v is not None},
    )


def target_name(pipeline: PipelineSpec) -> str:
    sink = pipeline.sink
    return f"Delta table {sink.path}" if sink.type == "delta" else f"target {sink.table}"


def source_name(pipeline: PipelineSpec) -> str:
    source = pipeline.source
    if source.type == "delta":
        return f"source Delta table {source.path}"
    if source.query is not None:
        return f"source query on connection '{source.connection_id}'"
    return f"source table {source.table} on connection '{source.connection_id}'"

"""Assemble a Dagster `Definitions` from a validated project."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.assets import pipeline_asset, source_specs
from pgflow.bindings.checks.definitions import pipeline_checks
from pgflow.bindings.executor import pgflow_executor
from pgflow.bindings.health import health_sensors
from pgflow.bindings.io_managers import io_managers
from pgflow.bindings.schedules import pipeline_schedules
from pgflow.bindings.sensors import staleness_sensors
from pgflow.config.model import Project
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections


def build_definitions(project: Project) -> dg.Definitions:
    connections = PostgresConnections()
    delta = DeltaStorage()
    resources: dict[str, object] = {"pg": connections, "delta": delta}
    resources.update(io_managers(connections, delta))
    return dg.Definitions(
        assets=[*source_specs(project), *(pipeline_asset(p) for p in project.pipelines)],
        schedules=pipeline_schedules(project),
        sensors=[*staleness_sensors(project), *health_sensors(project)],
        asset_checks=pipeline_checks(project),
        resources=resources,
        executor=pgflow_executor,
    )

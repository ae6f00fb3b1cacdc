"""Assemble a Dagster `Definitions` from a validated project."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from pgflow.bindings.assets import source_specs
from pgflow.bindings.catalog_sensor import catalog_sensors
from pgflow.bindings.cdc_assets import cdc_group_asset
from pgflow.bindings.checks.definitions import grouped_checks
from pgflow.bindings.checks.in_step import checks_in_asset_step
from pgflow.bindings.checks.scan_job import scan_job, scan_schedules
from pgflow.bindings.code_references import git_link, linked_to_git
from pgflow.bindings.executor import pgflow_executor
from pgflow.bindings.health import health_sensors
from pgflow.bindings.io_managers import io_managers
from pgflow.bindings.maintenance import maintenance_job, maintenance_schedules
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.bindings.retries import retry_policy
from pgflow.bindings.schedules import pipeline_schedules
from pgflow.bindings.schema_assets import schema_asset, schema_steps
from pgflow.bindings.sensors import staleness_sensors
from pgflow.config.cdc_groups import cdc_groups
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections, with_sessions
from pgflow.sources.query_tables import live_query_inspector
from pgflow.sources.table_listing import live_lister


def load_definitions(
    path: Path | None = None,
    connections: PostgresConnections | None = None,
    resolve: bool = True,
) -> dg.Definitions:
    """The code location of the specs under `path` (default: $PGFLOW_CONFIG or ./pipelines),
    validated: a bad spec raises SpecError naming file and field. A schema-wide spec expands
    from the table cache next to it; without one, the source schema is listed once and the
    cache written; the tables a source query reads likewise (query_cache.py). `resolve`
    resolves the repository here, with the collector paused (Dagster reuses it); a
    Component's Definitions are merged into its project's first, so not there.
    `connections`: the `pg` resource's settings (a Component's); the specs add their
    connections' roles and session settings to it."""
    with collector_paused():
        project = load_project(path, lister=live_lister(), inspector=live_query_inspector())
        for note in project.notes:
            logging.getLogger("pgflow").warning(note)
        defs = build_definitions(
            project, pgflow_resources(with_sessions(project.connections, connections))
        )
        if resolve:
            defs.get_repository_def()
    return defs


def pgflow_resources(connections: PostgresConnections | None = None) -> dict[str, object]:
    """`pg` (connections), `delta` (object-store options) and the IO managers using them."""
    connections = connections or PostgresConnections()
    delta = DeltaStorage()
    return {"pg": connections, "delta": delta, **io_managers(connections, delta)}


def build_definitions(
    project: Project, resources: Mapping[str, object] | None = None
) -> dg.Definitions:
    shared = [g for g in cdc_groups(project) if len(g.pipelines) > 1]
    schemas = schema_steps(project.pipelines)
    in_groups = {p.name for g in shared for p in g.pipelines} | {p.name for s in schemas for p in s}
    retries = retry_policy()
    own_steps = [p for p in project.pipelines if p.name not in in_groups]
    checked_in_step = {p.name for p in own_steps if checks_in_asset_step(p)}
    alone = [pipeline_asset(p, retries, with_checks=p.name in checked_in_step) for p in own_steps]
    steps = [*(cdc_group_asset(g) for g in shared), *(schema_asset(s) for s in schemas)]
    maintenance = maintenance_job(project)  # None without Delta sinks
    scans = scan_job(project)  # None without scan checks
    assets: list[dg.AssetSpec | dg.AssetsDefinition] = [*source_specs(project), *alone, *steps]
    link = git_link(project)
    return dg.Definitions(
        assets=linked_to_git(assets, link) if link else assets,
        jobs=[job for job in (maintenance, scans) if job is not None],
        schedules=[
            *pipeline_schedules(project),
            *maintenance_schedules(project, maintenance),
            *scan_schedules(project, scans),
        ],
        sensors=[*staleness_sensors(project), *health_sensors(project), *catalog_sensors(project)],
        asset_checks=grouped_checks(project, in_asset_steps=checked_in_step),
        resources=(
            pgflow_resources(with_sessions(project.connections)) if resources is None else resources
        ),
        executor=pgflow_executor,
    )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while the code location loads: 1,000
    pipelines allocate millions of objects that all stay, and the collector would walk the
    growing heap again and again (a third of the load's CPU). Then the few cycles left behind
    are collected once and what stays is frozen (`gc.freeze`): the definitions live as long as
    the process, and later collections, and the interpreter's exit, skip them (a run worker
    with 1,000 assets otherwise spends most of a second exiting). With the collector paused,
    everything the load allocated is still in the youngest generation, so collecting that one
    finds the load's cycles without walking Dagster's whole heap (a full collection: 85 ms of
    CPU in every one-asset `dagster asset materialize`)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.collect(0)
            gc.freeze()
            gc.enable()

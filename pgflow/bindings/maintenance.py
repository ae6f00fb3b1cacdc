"""Delta table maintenance in Dagster (the flow: pgflow/flows/delta_maintenance.py).

- The job `pgflow_delta_maintenance`: one op over the Delta sink tables (config `pipelines`
  selects some; empty: all), each table's effect recorded as an AssetObservation of its asset.
- One schedule per spec with `sink.options.maintenance.schedule`, running the job for it.
- After a load (bindings/loads.py), when `optimize_every` commits have passed: maintenance in
  the same step, its effect in the materialization's metadata. A maintenance refused by a
  concurrent writer does not fail the load (it committed): the metadata says so, and the
  next load, still due, tries again.

deltalake is imported where maintenance runs (see io_managers.py), not at code-location load.
No `from __future__ import annotations`: Dagster reads the op's annotations (config, resource).
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from pgflow.bindings.assets import asset_key
from pgflow.config.model import DeltaMaintenance, PipelineSpec, Project
from pgflow.connections.delta_storage import DeltaStorage

if TYPE_CHECKING:
    from pgflow.flows.delta_maintenance import MaintenanceResult

JOB_NAME = "pgflow_delta_maintenance"
OP_NAME = "delta_maintenance"


class MaintenanceConfig(dg.Config):
    """Which pipelines' Delta tables to maintain (by pipeline name); empty: every one."""

    pipelines: list[str] = Field(default_factory=list)


def delta_pipelines(project: Project) -> list[PipelineSpec]:
    return [p for p in project.pipelines if p.sink.type == "delta" and p.sink.path]


def settings_of(spec: PipelineSpec) -> DeltaMaintenance:
    return spec.sink.maintenance or DeltaMaintenance()


def maintenance_metadata(result: "MaintenanceResult") -> dict[str, Any]:
    values = {
        "files_before": result.files_before,
        "files_after": result.files_after,
        "bytes_before": result.bytes_before,
        "bytes_after": result.bytes_after,
        "version_before": result.version_before,
        "version_after": result.version_after,
        "files_compacted": result.files_compacted,
        "files_vacuumed": result.files_vacuumed,
    }
    metadata: dict[str, Any] = {
        f"pgflow/maintenance_{k}": dg.MetadataValue.int(v) for k, v in values.items()
    }
    metadata["pgflow/maintenance_checkpoint"] = dg.MetadataValue.bool(result.checkpoint)
    metadata["pgflow/maintenance_seconds"] = dg.MetadataValue.float(round(result.seconds, 3))
    return metadata


def maintenance_after_load(
    spec: PipelineSpec, storage_options: dict[str, str] | None
) -> dict[str, Any]:
    """Maintenance after a Delta load when `optimize_every` commits have passed; metadata."""
    settings, path = spec.sink.maintenance, spec.sink.path
    if settings is None or settings.optimize_every == 0 or path is None:
        return {}
    from deltalake import DeltaTable

    from pgflow.flows.delta_maintenance import MaintenanceConflict, maintain, maintenance_due

    if not maintenance_due(DeltaTable(path, storage_options=storage_options), settings):
        return {}
    try:
        return maintenance_metadata(maintain(path, storage_options, settings))
    except MaintenanceConflict as error:
        return {"pgflow/maintenance": dg.MetadataValue.text(str(error))}


def maintenance_job(project: Project) -> dg.JobDefinition | None:
    """The job maintaining every Delta sink table of the project (None: there is none)."""
    by_name = {p.name: p for p in delta_pipelines(project)}
    if not by_name:
        return None

    @dg.op(name=OP_NAME, out={}, description="Compact, vacuum and checkpoint Delta tables.")
    def delta_maintenance(
        context: dg.OpExecutionContext, config: MaintenanceConfig, delta: DeltaStorage
    ) -> Iterator[dg.AssetObservation]:
        unknown = sorted(set(config.pipelines) - set(by_name))
        if unknown:
            raise dg.Failure(
                f"no Delta sink pipeline named {', '.join(unknown)}; choose from: "
                f"{', '.join(sorted(by_name))}"
            )
        failures = []
        for spec in [by_name[name] for name in config.pipelines] or list(by_name.values()):
            outcome = _maintain_one(context, spec, delta.storage_options())
            if isinstance(outcome, str):
                failures.append(outcome)
            elif outcome is not None:
                yield outcome  # now: a later table's failure must not drop it
        if failures:
            raise dg.Failure("maintenance failed for:\n" + "\n".join(failures))

    @dg.job(name=JOB_NAME, description="Delta table maintenance of pgflow's Delta sinks.")
    def pgflow_delta_maintenance() -> None:
        delta_maintenance()

    return pgflow_delta_maintenance


def _maintain_one(
    context: dg.OpExecutionContext, spec: PipelineSpec, storage_options: dict[str, str] | None
) -> dg.AssetObservation | str | None:
    """One table maintained: its observation, or the problem (None: no table yet)."""
    from deltalake import DeltaTable

    from pgflow.flows.delta_maintenance import maintain

    path = spec.sink.path
    assert path is not None
    if not DeltaTable.is_deltatable(path, storage_options):
        context.log.info(f"{spec.name}: no Delta table at {path} yet (never loaded); skipped")
        return None
    try:
        result = maintain(path, storage_options, settings_of(spec))
    except Exception as error:  # one table's failure must not stop the others
        return f"  - {spec.name} ({path}): {error}"
    return dg.AssetObservation(asset_key=asset_key(spec), metadata=maintenance_metadata(result))


def maintenance_schedules(
    project: Project, job: dg.JobDefinition | None
) -> list[dg.ScheduleDefinition]:
    """One schedule per spec that sets `sink.options.maintenance.schedule`."""
    if job is None:
        return []
    schedules = []
    for spec in delta_pipelines(project):
        schedule = settings_of(spec).schedule
        if schedule is None:
            continue
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{spec.name}_delta_maintenance_schedule",
                job=job,
                cron_schedule=schedule.cron,
                execution_timezone=schedule.timezone,
                run_config={"ops": {OP_NAME: {"config": {"pipelines": [spec.name]}}}},
                description=f"Delta maintenance of {spec.sink.path}, from {spec.file}.",
                tags={"pgflow/pipeline": spec.name, "pgflow/maintenance": "delta"},
            )
        )
    return schedules

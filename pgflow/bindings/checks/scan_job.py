"""The scan checks' own job and schedules.

A scan check reads a whole table (the source or the target): `row_count_parity`'s counts,
`value_parity`'s hashes, `unique_key` where no unique index proves it. Loads leave them out
of their runs (definitions.py; whole loads run them only with `checks.scan_after_load`), so
they run here: one job of the code location,
`pgflow_scan_checks`, selecting every pipeline's scan checks (by hand from the UI's Jobs page,
or `dagster job execute -m pgflow.definitions -j pgflow_scan_checks`), and one schedule per
`checks.scan_schedule` that the specs name (default daily at 03:00 UTC), each running the scan
checks of its own pipelines. The schedules start running: without them the scan checks would
not run at all unless asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import dagster as dg

from pgflow.bindings.checks.definitions import scan_check_names
from pgflow.bindings.checks.names import SCAN_JOB, check_key
from pgflow.config.model import DEFAULT_SCAN_SCHEDULE, PipelineSpec, Project, ScheduleSpec


def scan_check_keys(pipelines: Sequence[PipelineSpec]) -> list[dg.AssetCheckKey]:
    return [check_key(p, name) for p in pipelines for name in scan_check_names(p)]


def scan_job(project: Project) -> dg.UnresolvedAssetJobDefinition | None:
    """The job of every scan check of the project; None when no pipeline has one."""
    keys = scan_check_keys(project.pipelines)
    if not keys:
        return None
    return dg.define_asset_job(
        SCAN_JOB,
        selection=dg.AssetSelection.checks(*keys),
        description="pgflow's scan checks (row_count_parity, value_parity, unique_key without "
        "a unique index): each reads a whole table, so incremental loads leave them to this job.",
        tags={"pgflow/checks": "scan"},
    )


def scan_schedules(
    project: Project, job: dg.UnresolvedAssetJobDefinition | None
) -> list[dg.ScheduleDefinition]:
    """One schedule per `checks.scan_schedule`, running the scan checks of its pipelines."""
    if job is None:
        return []
    by_schedule: dict[ScheduleSpec, list[PipelineSpec]] = {}
    for pipeline in project.pipelines:
        spec = pipeline.checks.scan_schedule
        if spec is not None and scan_check_names(pipeline):
            by_schedule.setdefault(spec, []).append(pipeline)
    every = len(scan_check_keys(project.pipelines))
    ordered = sorted(by_schedule.items(), key=lambda item: (item[0].cron, item[0].timezone))
    return [_schedule(job, spec, members, every) for spec, members in ordered]


def scan_schedule_name(spec: ScheduleSpec) -> str:
    """The default schedule's name is the job's; another's carries a digest of its cron and
    time zone: unique, and stable while the spec says the same."""
    if spec == DEFAULT_SCAN_SCHEDULE:
        return f"{SCAN_JOB}_schedule"
    digest = hashlib.sha1(f"{spec.cron}|{spec.timezone}".encode()).hexdigest()[:8]
    return f"{SCAN_JOB}_{digest}_schedule"


def _schedule(
    job: dg.UnresolvedAssetJobDefinition,
    spec: ScheduleSpec,
    members: list[PipelineSpec],
    every: int,
) -> dg.ScheduleDefinition:
    keys = scan_check_keys(members)
    # The job's whole selection when this schedule has every scan check, else its own subset.
    subset = None if len(keys) == every else keys
    names = ", ".join(p.name for p in members[:3]) + (", ..." if len(members) > 3 else "")

    @dg.schedule(
        name=scan_schedule_name(spec),
        job=job,
        cron_schedule=spec.cron,
        execution_timezone=spec.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"The scan checks of {len(members)} pipeline(s) ({names}), from their "
        f"checks.scan_schedule '{spec.cron}' ({spec.timezone}).",
        tags={"pgflow/checks": "scan"},
    )
    def _scan(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(asset_check_keys=subset)

    return _scan

"""Schedules from the specs.

- A pipeline's `schedule` targets that asset. For a time-partitioned asset each tick runs
  the latest partition at the tick's time (yesterday's day with daily partitions, unless
  `end_offset: 1` also offers today's).
- The tables of a schema-wide spec that keep its schedule share one schedule (one run of the
  spec's step); a table whose `tables:` entry gives it another schedule gets its own.
- A group's schedule (`groups: {<name>: {schedule: ...}}`) runs the group's unpartitioned
  assets together in one run. One Dagster job cannot mix partitioned and unpartitioned
  assets, so each partitioned asset of the group without a schedule of its own gets one
  from the group's cron.
"""

from __future__ import annotations

from typing import TypedDict

import dagster as dg

from pgflow.bindings.assets import asset_key, run_tags, time_partitions
from pgflow.config.model import GroupSpec, PipelineSpec, Project, ScheduleSpec


def pipeline_schedules(project: Project) -> list[dg.ScheduleDefinition]:
    shared = _shared_wildcard_schedules(project.pipelines)
    in_shared = {p.name for members in shared.values() for p in members}
    schedules = [_wildcard_schedule(name, members) for name, members in shared.items()]
    for pipeline in project.pipelines:
        if pipeline.name in in_shared:
            continue
        cron = pipeline.schedule or _group_cron_for_partitioned(project, pipeline)
        if cron is not None:
            schedules.append(_pipeline_schedule(pipeline, cron))
    for group in project.groups.values():
        members = [p for p in project.pipelines if p.group == group.name and not p.partitions]
        if group.schedule is not None and members:
            schedules.append(_group_schedule(group, members))
    return schedules


def _shared_wildcard_schedules(
    pipelines: tuple[PipelineSpec, ...],
) -> dict[str, list[PipelineSpec]]:
    """Per schema-wide spec, its unpartitioned tables with the schedule most of them have."""
    by_schedule: dict[tuple[str, ScheduleSpec], list[PipelineSpec]] = {}
    for pipeline in pipelines:
        if pipeline.expansion and pipeline.schedule and not pipeline.partitions:
            key = (pipeline.expansion.wildcard, pipeline.schedule)
            by_schedule.setdefault(key, []).append(pipeline)
    shared: dict[str, list[PipelineSpec]] = {}
    for (wildcard, _), members in by_schedule.items():
        if len(members) > len(shared.get(wildcard, [])):
            shared[wildcard] = members
    return {name: members for name, members in shared.items() if len(members) > 1}


def _wildcard_schedule(wildcard: str, members: list[PipelineSpec]) -> dg.ScheduleDefinition:
    schedule = members[0].schedule
    assert schedule is not None
    return dg.ScheduleDefinition(
        name=f"{wildcard}_tables_schedule",
        target=dg.AssetSelection.assets(*(asset_key(p) for p in members)),
        cron_schedule=schedule.cron,
        execution_timezone=schedule.timezone,
        description=f"{len(members)} tables of the schema-wide spec '{wildcard}' in "
        f"{members[0].file}, from its schedule.",
        tags={"pgflow/source": members[0].source.connection_id or "", "pgflow/wildcard": wildcard},
    )


def _group_cron_for_partitioned(project: Project, pipeline: PipelineSpec) -> ScheduleSpec | None:
    group = project.groups.get(pipeline.group)
    return group.schedule if group is not None and pipeline.partitions else None


class _ScheduleArgs(TypedDict):
    """What a pipeline's schedule is, partitioned or not."""

    name: str
    cron_schedule: str
    execution_timezone: str
    target: dg.AssetSelection
    tags: dict[str, str]


def _pipeline_schedule(pipeline: PipelineSpec, cron: ScheduleSpec) -> dg.ScheduleDefinition:
    origin = pipeline.file if pipeline.schedule else f"group '{pipeline.group}'"
    common = _ScheduleArgs(
        name=f"{pipeline.name}_schedule",
        cron_schedule=cron.cron,
        execution_timezone=cron.timezone,
        target=dg.AssetSelection.assets(asset_key(pipeline)),
        tags=run_tags(pipeline),
    )
    if pipeline.partitions is None:
        return dg.ScheduleDefinition(description=f"From the schedule of {origin}.", **common)
    partitions = time_partitions(pipeline.partitions)

    @dg.schedule(
        description=f"The latest {pipeline.partitions.type} partition, from the schedule of "
        f"{origin}.",
        **common,
    )
    def _latest_partition(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        # The partitions that exist at the tick's time, not at the (possibly late) evaluation.
        with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
            key = partitions.get_last_partition_key()
        if key is None:
            return dg.SkipReason(
                f"no partition has ended yet (partitions start {partitions.start})"
            )
        return dg.RunRequest(partition_key=key, tags=run_tags(pipeline))

    return _latest_partition


def _group_schedule(group: GroupSpec, members: list[PipelineSpec]) -> dg.ScheduleDefinition:
    assert group.schedule is not None
    return dg.ScheduleDefinition(
        name=f"{group.name.replace('/', '__')}_group_schedule",
        # The group's pgflow assets only: the group may also hold non-materializable sources.
        target=dg.AssetSelection.assets(*(asset_key(p) for p in members)),
        cron_schedule=group.schedule.cron,
        execution_timezone=group.schedule.timezone,
        description=f"Every unpartitioned pgflow asset of group '{group.name}', from {group.file}.",
        tags={"pgflow/group": group.name},
    )

"""Schedules from the specs' `schedule` key: one per pipeline, targeting that asset only."""

from __future__ import annotations

import dagster as dg

from pgflow.config.model import Project


def pipeline_schedules(project: Project) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name=f"{p.name}_schedule",
            target=dg.AssetSelection.assets(dg.AssetKey(list(p.asset_key))),
            cron_schedule=p.schedule.cron,
            execution_timezone=p.schedule.timezone,
            description=f"From the schedule of {p.file}.",
        )
        for p in project.pipelines
        if p.schedule is not None
    ]

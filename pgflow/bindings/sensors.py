"""Staleness sensors: one per source connection (work in progress)."""

from __future__ import annotations

import dagster as dg

from pgflow.config.model import Project


def staleness_sensors(project: Project) -> list[dg.SensorDefinition]:
    return []

"""Slot health and freshness sensors (work in progress)."""

from __future__ import annotations

import dagster as dg

from pgflow.config.model import Project


def health_sensors(project: Project) -> list[dg.SensorDefinition]:
    return []

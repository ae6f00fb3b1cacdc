"""Asset checks per pipeline (work in progress)."""

from __future__ import annotations

import dagster as dg

from pgflow.config.model import Project


def pipeline_checks(project: Project) -> list[dg.AssetChecksDefinition]:
    return []

"""The names of pgflow's asset checks and their keys: what the UI, the sensors' run requests
and run config address, so they never change."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.assets import asset_key
from pgflow.config.model import PipelineSpec

UNIQUE_KEY = "unique_key"
ROW_COUNT_PARITY = "row_count_parity"
SCHEMA = "schema"
FRESHNESS = "freshness"
SLOT_HEALTH = "slot_health"
VALUE_PARITY = "value_parity"
REJECTED_ROWS = "rejected_rows"

# The tag of an op that runs checks only, loads nothing (the executor keeps it in-process).
CHECKS_ONLY_TAG = "pgflow/checks_only"

# The job of the scan checks (those that read whole tables), with their schedules.
SCAN_JOB = "pgflow_scan_checks"


def check_key(pipeline: PipelineSpec, name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(asset_key(pipeline), name)

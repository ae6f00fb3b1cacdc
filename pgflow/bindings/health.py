"""Sensors that act on pipeline health between runs.

- `pgflow_slot_health_<connection>`: one per source connection with CDC pipelines. A slot
  retaining more WAL than `checks.retained_wal_warn` gets its pipeline materialized (the run
  drains the slot); a missing, invalidated or foreign slot gets its `slot_health` check run,
  once per incident, so the failure shows on the asset. Run keys:
  `slot:<slot>:<restart_lsn>` (drain), `slot:<slot>:missing:<last materialization timestamp>`,
  `slot:<slot>:invalidated:<confirmed_flush_lsn>`, `slot:<slot>:foreign:<database>`.
- `pgflow_freshness`: when a pipeline's freshness turns warn or fail (the same rule as its
  `freshness` check), runs that check once per state and materialization; run key
  `freshness:<pipeline>:<state>:<last materialization timestamp, or never>`.

No `from __future__ import annotations` here: Dagster inspects the resource annotations.
"""

import time
from collections import defaultdict

import dagster as dg

from pgflow.bindings.assets import asset_key, latest_materialization, run_tags
from pgflow.bindings.checks.context import Clock
from pgflow.bindings.checks.freshness import pipeline_freshness
from pgflow.bindings.checks.names import FRESHNESS, SLOT_HEALTH, check_key
from pgflow.bindings.humanize import human_bytes
from pgflow.config.model import PipelineSpec, Project
from pgflow.config.naming import dagster_name
from pgflow.connections.resource import PostgresConnections
from pgflow.sources.slot_health import SlotState, SlotStatus, read_slot, slot_status

FRESHNESS_SENSOR = "pgflow_freshness"
FRESHNESS_INTERVAL_SECONDS = 60


def health_sensors(project: Project, clock: Clock = time.time) -> list[dg.SensorDefinition]:
    sensors = [
        slot_health_sensor(project, connection_id, pipelines)
        for connection_id, pipelines in cdc_pipelines_by_connection(project).items()
    ]
    fresh = [p for p in project.pipelines if p.freshness is not None]
    if fresh:
        sensors.append(freshness_sensor(fresh, clock))
    return sensors


def cdc_pipelines_by_connection(project: Project) -> dict[str, list[PipelineSpec]]:
    found: dict[str, list[PipelineSpec]] = defaultdict(list)
    for pipeline in project.pipelines:
        source = pipeline.source
        if source.options.incremental_strategy == "cdc" and source.connection_id:
            found[source.connection_id].append(pipeline)
    return dict(sorted(found.items()))


def slot_sensor_name(connection_id: str) -> str:
    return f"pgflow_slot_health_{dagster_name(connection_id)}"


# --- slot health --------------------------------------------------------------------------


def slot_health_sensor(
    project: Project, connection_id: str, pipelines: list[PipelineSpec]
) -> dg.SensorDefinition:
    settings = project.sensor_settings(connection_id)
    connection_type = pipelines[0].source.connection_type
    assets = [asset_key(p) for p in pipelines]

    @dg.sensor(
        name=slot_sensor_name(connection_id),
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=_status(settings.running),
        # The assets select their checks too: a run may be a drain or a slot_health check.
        target=dg.AssetSelection.assets(*assets),
        description=(
            f"Watches the replication slots of the CDC pipelines on '{connection_id}': "
            "materializes a pipeline whose slot retains too much WAL, and runs the "
            "slot_health check of one whose slot is missing or invalidated."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, pg: PostgresConnections
    ) -> list[dg.RunRequest] | dg.SkipReason:
        with pg.connect(connection_id, connection_type, autocommit=True) as conn:
            conn.read_only = True
            with conn.transaction():
                states = [(p, read_slot(conn, _slot(p))) for p in pipelines]
        requests, lines = [], []
        for pipeline, state in states:
            status = slot_status(state, pipeline.checks.retained_wal_warn_bytes)
            request = slot_request(context.instance, pipeline, state, status)
            if request is not None:
                requests.append(request)
            lines.append(_slot_line(pipeline, state, status))
        return requests or dg.SkipReason("slots: " + "; ".join(lines))

    return _sensor


def _slot(pipeline: PipelineSpec) -> str:
    slot = pipeline.source.options.slot_name
    assert slot, "the loader names a slot for every CDC pipeline"
    return slot


def slot_request(
    instance: dg.DagsterInstance, pipeline: PipelineSpec, state: SlotState, status: SlotStatus
) -> dg.RunRequest | None:
    """What the slot's state calls for: a drain, a slot_health check run, or nothing."""
    if status in ("retaining", "unreserved"):
        # Keyed by restart_lsn: one drain per position; a new request once the slot moved.
        return dg.RunRequest(
            run_key=f"slot:{state.name}:{state.restart_lsn}",
            asset_selection=[asset_key(pipeline)],
            tags=run_tags(pipeline),
        )
    incident = _incident(instance, pipeline, state, status)
    if incident is None:
        return None
    return dg.RunRequest(
        run_key=f"slot:{state.name}:{status}:{incident}",
        asset_selection=[],
        asset_check_keys=[check_key(pipeline, SLOT_HEALTH)],
        tags=run_tags(pipeline),
    )


def _incident(
    instance: dg.DagsterInstance, pipeline: PipelineSpec, state: SlotState, status: SlotStatus
) -> str | None:
    """What identifies one breakage of the slot, so its check runs once, not every tick."""
    if status == "missing":
        latest = latest_materialization(instance, pipeline)
        # Never materialized: the first run creates the slot; nothing is broken yet.
        return None if latest is None else f"{latest.timestamp:.6f}"
    if status == "invalidated":
        return state.confirmed_flush_lsn or state.restart_lsn or "unknown"
    if status == "foreign":
        return f"{state.database}"
    return None


def _slot_line(pipeline: PipelineSpec, state: SlotState, status: SlotStatus) -> str:
    if not state.exists:
        return f"{pipeline.name}: slot {state.name} missing"
    return (
        f"{pipeline.name}: slot {state.name} {status}, retains "
        f"{human_bytes(state.retained_bytes or 0)}, "
        f"wal_status {state.wal_status}"
    )


# --- freshness ----------------------------------------------------------------------------


def freshness_sensor(
    pipelines: list[PipelineSpec], clock: Clock = time.time
) -> dg.SensorDefinition:
    checks = [check_key(p, FRESHNESS) for p in pipelines]

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=FRESHNESS_INTERVAL_SECONDS,
        target=dg.AssetSelection.checks(*checks),
        description=(
            "Runs a pipeline's freshness check when its latest materialization passes "
            "warn_after or fail_after (or it was never materialized), once per state."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        now = clock()
        requests, lines = [], []
        for pipeline in pipelines:
            state = pipeline_freshness(context.instance, pipeline, now)
            lines.append(f"{pipeline.name}: {state.level}, {state.describe()}")
            if state.level == "fresh":
                continue
            last = f"{state.last:.6f}" if state.last is not None else "never"
            requests.append(
                dg.RunRequest(
                    run_key=f"freshness:{pipeline.name}:{state.level}:{last}",
                    asset_selection=[],
                    asset_check_keys=[check_key(pipeline, FRESHNESS)],
                    tags={"pgflow/pipeline": pipeline.name, "pgflow/check": FRESHNESS},
                )
            )
        return requests or dg.SkipReason("; ".join(lines))

    return _sensor


def _status(running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED

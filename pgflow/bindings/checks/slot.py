"""The `slot_health` check (CDC): the replication slot exists, is usable, and retains less WAL
than `checks.retained_wal_warn`."""

from __future__ import annotations

from typing import Any

import dagster as dg

from pgflow.bindings.assets import latest_materialization
from pgflow.bindings.checks.context import ERROR, WARN, CheckRun, result
from pgflow.bindings.checks.names import SLOT_HEALTH
from pgflow.bindings.humanize import human_bytes
from pgflow.config.model import PipelineSpec
from pgflow.sources.slot_health import SlotState, SlotStatus, read_slot, slot_status


def offered(pipeline: PipelineSpec) -> bool:
    return pipeline.source.options.incremental_strategy == "cdc"


def describe(pipeline: PipelineSpec) -> str:
    return (
        f"Replication slot {pipeline.source.options.slot_name} exists and can stream (ERROR "
        "otherwise), and retains at most "
        f"{human_bytes(pipeline.checks.retained_wal_warn_bytes)} of WAL (WARN above)."
    )


def check(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    slot = pipeline.source.options.slot_name
    assert slot
    conn = run.source()
    with conn.transaction():
        state = read_slot(conn, slot)
    status = slot_status(state, pipeline.checks.retained_wal_warn_bytes)
    metadata = slot_metadata(state, pipeline)
    if status == "missing" and latest_materialization(instance, pipeline) is None:
        return result(
            pipeline,
            SLOT_HEALTH,
            False,
            WARN,
            f"replication slot {slot} does not exist yet: the first materialization creates it",
            metadata,
        )
    severity = WARN if status in ("retaining", "unreserved") else ERROR
    text = slot_text(pipeline, state, status)
    return result(pipeline, SLOT_HEALTH, status == "healthy", severity, text, metadata)


def slot_metadata(state: SlotState, pipeline: PipelineSpec) -> dict[str, Any]:
    return {
        "slot": dg.MetadataValue.text(state.name),
        "exists": dg.MetadataValue.bool(state.exists),
        "wal_status": dg.MetadataValue.text(state.wal_status or ""),
        "retained_wal_bytes": dg.MetadataValue.int(state.retained_bytes)
        if state.retained_bytes is not None
        else None,
        "retained_wal_warn_bytes": dg.MetadataValue.int(pipeline.checks.retained_wal_warn_bytes),
        "active": dg.MetadataValue.bool(state.active),
        "confirmed_flush_lsn": dg.MetadataValue.text(state.confirmed_flush_lsn or ""),
        "restart_lsn": dg.MetadataValue.text(state.restart_lsn or ""),
        "invalidation": dg.MetadataValue.text(state.invalidation) if state.invalidation else None,
    }


def slot_text(pipeline: PipelineSpec, state: SlotState, status: SlotStatus) -> str:
    """What is wrong with the slot (or that nothing is), with the fix."""
    slot, where = state.name, f"connection '{pipeline.source.connection_id}'"
    reset = "materialize the asset with run config reset: true (re-snapshot)"
    held = f"{human_bytes(state.retained_bytes or 0)} of WAL"
    if status == "missing":
        return (
            f"replication slot {slot} does not exist on {where} (dropped outside pgflow, or by "
            f"`pgflow cdc cleanup`): changes since the last run cannot be streamed and the next "
            f"run fails. Fix: {reset}. If the pipeline is retired, remove its spec and run "
            "`pgflow cdc cleanup` to drop its publication"
        )
    if status == "invalidated":
        return (
            f"replication slot {slot} on {where} was invalidated ({state.invalidation}): it "
            f"can never stream again and the next run fails. Fix: {reset}, which replaces "
            "the slot; raise max_slot_wal_keep_size or run the pipeline more often so it does "
            "not recur"
        )
    if status == "foreign":
        return (
            f"a replication slot named {slot} exists on {where} but belongs to database "
            f"{state.database} and plugin {state.plugin}, not {state.current_database} and "
            "pgoutput: the next run fails. Fix: choose another source.options.slot_name"
        )
    if status == "unreserved":
        return (
            f"replication slot {slot} pins {held}, past max_slot_wal_keep_size (wal_status "
            "unreserved): the next checkpoint may invalidate it. Fix: materialize the asset "
            "now, which drains the slot"
        )
    limit = human_bytes(pipeline.checks.retained_wal_warn_bytes)
    if status == "retaining":
        return (
            f"replication slot {slot} pins {held} on {where} (warning above {limit}): the "
            "source keeps that WAL until the pipeline reads it. Fix: materialize the asset "
            "(it drains the slot), or raise checks.retained_wal_warn"
        )
    return (
        f"replication slot {slot} is healthy: it retains {held} (warning above {limit}), "
        f"wal_status {state.wal_status}"
    )

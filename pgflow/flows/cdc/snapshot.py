"""The start of a pipeline's stream: a fresh slot, and the target as of the slot's start
(the initial snapshot, read in the snapshot the slot exported) or left as it is."""

from __future__ import annotations

import psycopg

from pgflow.flows.cdc.apply import create_missing_target
from pgflow.flows.cdc.model import CdcSettings, CdcTarget, RunContext
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres import ddl, state
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import cdc, publication
from pgflow.sources.catalog import describe_table


def check_slot_is_ours(control: psycopg.Connection, settings: CdcSettings, pipeline: str) -> None:
    """Starting over drops the slot: only one pgflow created for this pipeline."""
    owner = publication.publication_owner(control, settings.publication)
    if owner is None or (owner.pipeline, owner.slot) != (pipeline, settings.slot):
        raise cdc.ReplicationError(
            f"replication slot {settings.slot} already exists and pgflow did not create it for "
            f"pipeline '{pipeline}'; starting over would drop it and the changes it holds. "
            "Choose another source.options.slot_name, or drop the slot if it is unused"
        )


def start(run: RunContext, reason: str) -> LoadResult | None:
    """A fresh slot, and the target as of the slot's start (the snapshot's load result) or
    left as it is (snapshot: never, None)."""
    control, slot = run.control, run.settings.slot
    existing = cdc.slot_info(control, slot)
    if existing is not None:
        # The sink holds no position from it, so nothing depends on what it retained: an
        # invalidated slot is replaced too, which is how a reset recovers from one.
        cdc.check_slot_usable(existing, slot, control.info.dbname)
        cdc.drop_slot(control, slot)
    if run.settings.snapshot == "never":
        _store_start(run, cdc.create_slot(control, slot))
        return None
    return _snapshot(run, reason)


def _snapshot(run: RunContext, reason: str) -> LoadResult:
    """Load the table as of the new slot's start, storing that LSN with the rows."""
    with (
        cdc.exported_snapshot_slot(run.connect_source, run.settings.slot) as (start_lsn, snapshot),
        run.connect_source() as reader,
    ):
        source = cdc.SnapshotSource(
            reader,
            run.table,
            run.identity,
            snapshot,
            start_lsn,
            f"initial snapshot ({reason})",
            extra_null_columns=_extra_columns(run.target),
        )
        target = run.target
        return load_table(
            run.sink, source, target.table, target.strategy, pipeline=run.pipeline, reset=True
        )


def _extra_columns(target: CdcTarget) -> tuple[str, ...]:
    return (target.deleted_column,) if target.deleted_column else ()


def _store_start(run: RunContext, start_lsn: int) -> None:
    """snapshot: never: create the target if missing and start streaming from the slot."""
    table = run.target.table
    log = SqlLog(run.sink)
    with run.sink.transaction():
        ddl.lock_target(log, table)
        create_missing_target(log, run.target, describe_table(run.control, run.table))
        state.write_position(log, table, run.pipeline, cdc.lsn_position(run.identity, start_lsn))

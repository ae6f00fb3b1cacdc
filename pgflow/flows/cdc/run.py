"""One CDC run of a pipeline with a slot of its own: a group of one table (group_run.py).

Order of effects, which is what makes it exactly-once: a batch is applied in ONE sink
transaction that also stores the batch's end LSN; only then is the slot confirmed there. A
crash between the two leaves the slot behind the sink: the next run starts at the stored LSN
and skips what it already holds. A crash before the commit loses nothing.
"""

from __future__ import annotations

from pgflow.config.model import TableName
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import replicate_group
from pgflow.flows.cdc.model import CdcResult, CdcSettings, CdcTarget, ConnectSink
from pgflow.sources import cdc


def replicate(
    connect_source: cdc.ConnectSource,
    connect_sink: ConnectSink,
    table: TableName,
    target: CdcTarget,
    settings: CdcSettings,
    pipeline: str,
    include_columns: tuple[str, ...] | None = None,
) -> CdcResult:
    """Bring `target` up to date with `table` through the pipeline's slot.

    `connect_source` and `connect_sink` open the run's connections (the connection resource's,
    so that secrets stay with it). The
    target's lock is held for the whole run: a second run of the same pipeline starts once
    this one is done, from the position this one stored."""
    group = GroupSettings(
        name=pipeline,
        slot=settings.slot,
        publication=settings.publication,
        batch_changes=settings.batch_changes,
        max_changes=settings.max_changes,
        auto_cleanup=settings.auto_cleanup,
    )
    member = GroupMember(
        pipeline=pipeline,
        table=table,
        target=target,
        connect_sink=connect_sink,
        sink_id="sink",
        snapshot=settings.snapshot,
        reset=settings.reset,
        include_columns=include_columns,
    )
    outcome = replicate_group(connect_source, group, [member], {pipeline})[pipeline]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome

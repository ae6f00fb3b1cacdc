"""A CDC group's run from its specs: the slot's settings, one member per pipeline, and every
connection opened through the connection resource (secrets stay with it). A member into Delta
gets the DeltaStorage resource's options; its changes are typed on the source database."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from pgflow.config.cdc_groups import CdcGroupSpec, cdc_groups
from pgflow.config.model import PipelineSpec, Project
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.model import (
    DEFAULT_BATCH_CHANGES,
    AnyCdcTarget,
    CdcTarget,
    ConnectSink,
    DeltaCdcTarget,
)

if TYPE_CHECKING:
    from pgflow.flows.cdc.group_run import GroupOutcome

# Every Delta member of a run shares one set of source connections (the DeltaCdcTarget's).
DELTA_SINK_ID = "delta"


def lone_group(pipeline: PipelineSpec) -> CdcGroupSpec:
    """The group of a CDC pipeline that shares its slot with no other."""
    (group,) = cdc_groups(Project(pipelines=(pipeline,)))
    return group


def run_cdc_group(
    connections: PostgresConnections,
    delta: DeltaStorage,
    group: CdcGroupSpec,
    selected: Collection[str],
    reset: bool,
) -> GroupOutcome:
    """Replicate the `selected` pipelines of `group` (by name); `reset` re-snapshots them."""
    # Imported by the runs that stream: every other run's process skips the CDC machinery.
    from pgflow.flows.cdc.group_run import replicate_group

    def connect_source(**kwargs: Any) -> AbstractContextManager[psycopg.Connection]:
        return connections.connect(group.connection_id, group.connection_type, **kwargs)

    members = [
        _member(connections, delta, p, reset and p.name in selected) for p in group.pipelines
    ]
    return replicate_group(connect_source, group_settings(group), members, selected)


def group_settings(group: CdcGroupSpec) -> GroupSettings:
    return GroupSettings(
        name=group.name,
        slot=group.slot_name,
        publication=group.publication_name,
        batch_changes=group.batch_changes or DEFAULT_BATCH_CHANGES,
        max_changes=group.max_changes,
        auto_cleanup=group.auto_cleanup,
        # A pipeline that named its slot before slots were shared owned it by its own name.
        former_owners=tuple(p.name for p in group.pipelines),
    )


def _member(
    connections: PostgresConnections, delta: DeltaStorage, pipeline: PipelineSpec, reset: bool
) -> GroupMember:
    options = pipeline.source.options
    target, connect_sink, sink_id = _target(connections, delta, pipeline)
    assert pipeline.source.table  # checked by the loader
    return GroupMember(
        pipeline=pipeline.name,
        table=pipeline.source.table,
        target=target,
        connect_sink=connect_sink,
        sink_id=sink_id,
        snapshot=options.snapshot,
        reset=reset or options.reset,
        include_columns=options.include_columns,
    )


def _target(
    connections: PostgresConnections, delta: DeltaStorage, pipeline: PipelineSpec
) -> tuple[AnyCdcTarget, ConnectSink, str]:
    """The member's target, how its sink connections open, and which members share them."""
    source, sink = pipeline.source, pipeline.sink
    options = source.options
    if sink.type == "delta":
        assert sink.path and source.connection_id  # checked by the loader
        target: AnyCdcTarget = DeltaCdcTarget(
            path=sink.path,
            strategy=sink.strategy,
            storage_options=delta.storage_options(),
            deleted_column=options.deleted_column,
            on_truncate=options.on_truncate,
            numeric_as=sink.numeric_as,
        )
        # The changes are typed on the source database (DeltaCdcTarget says why).
        connect = partial(connections.connect, source.connection_id, source.connection_type)
        return target, connect, DELTA_SINK_ID
    assert sink.connection_id and sink.table  # checked by the loader
    target = CdcTarget(sink.table, sink.strategy, options.deleted_column, options.on_truncate)
    connect = partial(connections.connect, sink.connection_id, sink.connection_type)
    return target, connect, f"{sink.connection_type}:{sink.connection_id}"

"""A CDC group's run from its specs: the slot's settings, one member per pipeline, and every
connection opened through the connection resource (secrets stay with it)."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import psycopg

from pgflow.config.cdc_groups import CdcGroupSpec, cdc_groups
from pgflow.config.model import PipelineSpec, Project
from pgflow.connections.resource import PostgresConnections
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import GroupOutcome, replicate_group
from pgflow.flows.cdc.model import DEFAULT_BATCH_CHANGES, CdcTarget


def lone_group(pipeline: PipelineSpec) -> CdcGroupSpec:
    """The group of a CDC pipeline that shares its slot with no other."""
    (group,) = cdc_groups(Project(pipelines=(pipeline,)))
    return group


def run_cdc_group(
    connections: PostgresConnections,
    group: CdcGroupSpec,
    selected: Collection[str],
    reset: bool,
) -> GroupOutcome:
    """Replicate the `selected` pipelines of `group` (by name); `reset` re-snapshots them."""

    def connect_source(**kwargs: Any) -> AbstractContextManager[psycopg.Connection]:
        return connections.connect(group.connection_id, group.connection_type, **kwargs)

    members = [_member(connections, p, reset and p.name in selected) for p in group.pipelines]
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


def _member(connections: PostgresConnections, pipeline: PipelineSpec, reset: bool) -> GroupMember:
    source, sink = pipeline.source, pipeline.sink
    options = source.options
    assert source.table and sink.connection_id and sink.table  # checked by the loader
    return GroupMember(
        pipeline=pipeline.name,
        table=source.table,
        target=CdcTarget(sink.table, sink.strategy, options.deleted_column, options.on_truncate),
        connect_sink=partial(connections.connect, sink.connection_id, sink.connection_type),
        sink_id=f"{sink.connection_type}:{sink.connection_id}",
        snapshot=options.snapshot,
        reset=reset or options.reset,
        include_columns=options.include_columns,
    )

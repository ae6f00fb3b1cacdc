"""CDC pipelines grouped by replication slot, and the rules a group follows.

CDC pipelines on one source connection that name the same `source.options.slot_name` share
that slot and one publication (default name: the slot's). A pipeline that names no slot has
one of its own, `pgflow_<pipeline>`. The slot's settings belong to the group, so its members
must agree on them; what is per table (snapshot, deleted_column, on_truncate, include_columns,
reset, the sink) may differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pgflow.config.errors import SpecProblem
from pgflow.config.model import ConnectionType, PipelineSpec, Project

# Options of the slot itself (CdcGroupSpec: auto_cleanup, batch_changes, max_changes).
SLOT_OPTIONS = ("auto_cleanup", "target_batch_size", "max_changes_per_run")


@dataclass(frozen=True)
class CdcGroupSpec:
    """The CDC pipelines that read one replication slot (one, for a slot of its own)."""

    name: str  # the pipeline's name for a slot of its own; else the slot's name
    connection_id: str
    connection_type: ConnectionType
    slot_name: str
    publication_name: str
    pipelines: tuple[PipelineSpec, ...]  # sorted by name
    shared: bool  # the spec named the slot (slot_name set), even with one member
    # Settings of the slot, the same in every member:
    auto_cleanup: bool
    batch_changes: int | None  # target_batch_size
    max_changes: int | None  # max_changes_per_run


def cdc_groups(project: Project) -> list[CdcGroupSpec]:
    """Every CDC pipeline of a loaded project in exactly one group, sorted by group name."""
    groups = [_group(members) for members in _by_slot(_cdc(project.pipelines)).values()]
    return sorted(groups, key=lambda g: (g.name, g.connection_id))


def cdc_group_of(project: Project, pipeline_name: str) -> CdcGroupSpec | None:
    """The group of the CDC pipeline named `pipeline_name`; None for any other pipeline."""
    for group in cdc_groups(project):
        if any(p.name == pipeline_name for p in group.pipelines):
            return group
    return None


def with_group_publications(pipelines: Sequence[PipelineSpec]) -> list[PipelineSpec]:
    """Each CDC pipeline with its group's publication_name filled in (checked pipelines)."""
    publications = {
        key: _publication(members) for key, members in _by_slot(_cdc(pipelines)).items()
    }
    filled = []
    for pipeline in pipelines:
        options = pipeline.source.options
        if options.incremental_strategy == "cdc":
            options = replace(options, publication_name=publications[_slot_key(pipeline)])
            pipeline = replace(pipeline, source=replace(pipeline.source, options=options))
        filled.append(pipeline)
    return filled


def group_problems(pipelines: Sequence[PipelineSpec]) -> list[SpecProblem]:
    """What CDC pipelines must not share, and what the pipelines of one slot must agree on."""
    cdc = _cdc(pipelines)
    problems = _slot_on_two_connections(cdc)
    problems.extend(_table_in_two_pipelines(cdc))
    groups = _by_slot(cdc)
    for members in groups.values():
        problems.extend(_unnamed_members(members))
        problems.extend(_publication_disagreements(members))
        problems.extend(_slot_option_disagreements(members))
    problems.extend(_publication_on_two_slots(list(groups.values())))
    problems.extend(_slot_named_as_a_pipeline(cdc))
    return problems


def _cdc(pipelines: Sequence[PipelineSpec]) -> list[PipelineSpec]:
    return [p for p in pipelines if p.source.options.incremental_strategy == "cdc"]


def _slot_key(pipeline: PipelineSpec) -> tuple[str, str]:
    return pipeline.source.connection_id or "", pipeline.source.options.slot_name or ""


def _by_slot(pipelines: list[PipelineSpec]) -> dict[tuple[str, str], list[PipelineSpec]]:
    groups: dict[tuple[str, str], list[PipelineSpec]] = {}
    for pipeline in pipelines:
        groups.setdefault(_slot_key(pipeline), []).append(pipeline)
    return groups


def _publication(members: list[PipelineSpec]) -> str:
    named = [p.source.options.publication_name for p in members]
    return next((n for n in named if n), _slot_key(members[0])[1])


def _group(members: list[PipelineSpec]) -> CdcGroupSpec:
    ordered = tuple(sorted(members, key=lambda p: p.name))
    first = ordered[0]
    connection_id, slot = _slot_key(first)
    shared = any(p.source.options.slot_named for p in ordered)
    options = first.source.options
    return CdcGroupSpec(
        name=slot if shared else first.name,
        connection_id=connection_id,
        connection_type=first.source.connection_type,
        slot_name=slot,
        publication_name=_publication(list(ordered)),
        pipelines=ordered,
        shared=shared,
        auto_cleanup=options.auto_cleanup,
        batch_changes=options.target_batch_size,
        max_changes=options.max_changes_per_run,
    )


def _later(
    pipelines: list[PipelineSpec], key: Callable[[PipelineSpec], object]
) -> list[tuple[PipelineSpec, PipelineSpec]]:
    """(first, later) for each pipeline whose `key` an earlier one has."""
    first_by_key: dict[object, PipelineSpec] = {}
    pairs = []
    for pipeline in pipelines:
        first = first_by_key.setdefault(key(pipeline), pipeline)
        if first is not pipeline:
            pairs.append((first, pipeline))
    return pairs


def _slot_on_two_connections(pipelines: list[PipelineSpec]) -> list[SpecProblem]:
    problems = []
    by_name: dict[str, PipelineSpec] = {}
    for pipeline in pipelines:
        connection, slot = _slot_key(pipeline)
        first = by_name.setdefault(slot, pipeline)
        if _slot_key(first)[0] != connection:
            problems.append(
                _problem(
                    pipeline,
                    "source.options.slot_name",
                    f"slot {slot} on connection '{connection}' has the name of the slot of "
                    f"pipeline '{first.name}' ({first.file}) on connection "
                    f"'{_slot_key(first)[0]}'; a slot name is per server and pgflow cannot tell "
                    "whether two connection ids reach the same one: give each connection's "
                    "pipelines their own slot_name",
                )
            )
    return problems


def _table_in_two_pipelines(pipelines: list[PipelineSpec]) -> list[SpecProblem]:
    def table_key(p: PipelineSpec) -> tuple[str | None, str]:
        return p.source.connection_id, str(p.source.table)

    return [
        _problem(
            later,
            "source.table",
            f"{later.source.table} on connection '{later.source.connection_id}' is already "
            f"replicated by pipeline '{first.name}' ({first.file}, slot "
            f"{first.source.options.slot_name}); a source table is in one CDC pipeline only, "
            "so that one slot and one position cover its changes: keep one of the two, or "
            "read this one with incremental_strategy column or xmin",
        )
        for first, later in _later(pipelines, table_key)
    ]


def _unnamed_members(members: list[PipelineSpec]) -> list[SpecProblem]:
    """A default slot name (pgflow_<pipeline>) is the pipeline's own: never shared."""
    if len(members) < 2 or all(p.source.options.slot_named for p in members):
        return []
    first, slot = members[0], _slot_key(members[0])[1]
    unnamed = ", ".join(f"'{p.name}'" for p in members if not p.source.options.slot_named)
    return [
        _problem(
            later,
            "source.options.slot_name",
            f"uses replication slot {slot}, as pipeline '{first.name}' ({first.file}) does, "
            f"but that is the default slot name (pgflow_<pipeline name>) of {unnamed}, a "
            "slot of its own; pipelines share a slot only when each names it: set the same "
            "slot_name on each, or give this one another slot_name",
        )
        for later in members[1:]
    ]


def _publication_disagreements(members: list[PipelineSpec]) -> list[SpecProblem]:
    named = [p for p in members if p.source.options.publication_name]
    if not named:
        return []
    first = named[0]
    expected = first.source.options.publication_name
    slot = _slot_key(first)[1]
    return [
        _problem(
            p,
            "source.options.publication_name",
            f"is '{p.source.options.publication_name}', but pipeline '{first.name}' "
            f"({first.file}) on the same slot {slot} sets '{expected}'; the pipelines of one "
            f"slot stream one publication: set the same publication_name on each, or omit it "
            f"(default: the slot's name, {slot})",
        )
        for p in named[1:]
        if p.source.options.publication_name != expected
    ]


def _slot_option_disagreements(members: list[PipelineSpec]) -> list[SpecProblem]:
    first, slot = members[0], _slot_key(members[0])[1]
    names = ", ".join(f"'{p.name}'" for p in members)
    problems = []
    for option in SLOT_OPTIONS:
        expected = getattr(first.source.options, option)
        for p in members[1:]:
            value = getattr(p.source.options, option)
            if value != expected:
                problems.append(
                    _problem(
                        p,
                        f"source.options.{option}",
                        f"is {_shown(value)} here but {_shown(expected)} in pipeline "
                        f"'{first.name}' ({first.file}); it is a setting of slot {slot}, "
                        f"shared by pipelines {names}: set the same value on each",
                    )
                )
    return problems


def _publication_on_two_slots(groups: list[list[PipelineSpec]]) -> list[SpecProblem]:
    first_slot: dict[tuple[str, str], list[PipelineSpec]] = {}
    problems = []
    for members in groups:
        connection, slot = _slot_key(members[0])
        publication = _publication(members)
        first = first_slot.setdefault((connection, publication), members)
        if first is members:
            continue
        owner = first[0]
        problems.append(
            _problem(
                members[0],
                "source.options.publication_name",
                f"publication {publication} of slot {slot} is also the publication of slot "
                f"{_slot_key(owner)[1]} (pipeline '{owner.name}', {owner.file}); each slot "
                "streams a publication of its own: choose another publication_name (it "
                "defaults to the slot's name)",
            )
        )
    return problems


def _slot_named_as_a_pipeline(pipelines: list[PipelineSpec]) -> list[SpecProblem]:
    """A group is named after its slot, or its pipeline when the slot is its own: one name
    must not stand for two groups."""
    own = {p.name: p for p in pipelines if not p.source.options.slot_named}
    problems = []
    for pipeline in pipelines:
        slot = _slot_key(pipeline)[1]
        other = own.get(slot)
        if pipeline.source.options.slot_named and other is not None:
            problems.append(
                _problem(
                    pipeline,
                    "source.options.slot_name",
                    f"'{slot}' is also the name of pipeline '{other.name}' ({other.file}), "
                    "whose slot is its own; a slot's group is named after the slot, so the "
                    "two would share a name: choose another slot_name",
                )
            )
    return problems


def _shown(value: object) -> str:
    if value is None:
        return "not set (the default)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _problem(pipeline: PipelineSpec, field: str, message: str) -> SpecProblem:
    return SpecProblem(pipeline.file, pipeline.name, field, message)

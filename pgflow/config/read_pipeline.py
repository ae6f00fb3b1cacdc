"""One pipeline of a spec file: its sections read, checked together, and made a PipelineSpec."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from pgflow.config.checks_reader import read_checks
from pgflow.config.errors import SpecProblem
from pgflow.config.model import (
    ChecksSpec,
    FreshnessSpec,
    PartitionsSpec,
    PipelineSpec,
    ScheduleSpec,
    SinkSpec,
)
from pgflow.config.naming import dagster_name
from pgflow.config.read_asset import read_asset_key, read_group, read_name, read_owners, read_tags
from pgflow.config.read_schedule import read_freshness, read_partitions, read_schedule
from pgflow.config.read_sink import read_sink
from pgflow.config.read_source import read_source, with_cdc_defaults
from pgflow.config.reader import Section
from pgflow.config.semantics import check_pipeline


class _Operations(TypedDict):
    """The fields of a PipelineSpec that describe and operate its asset in Dagster."""

    description: str | None
    schedule: ScheduleSpec | None
    freshness: FreshnessSpec | None
    tags: dict[str, str]
    owners: tuple[str, ...]
    partitions: PartitionsSpec | None
    checks: ChecksSpec


def read_pipeline(
    entry: object, prefix: str, file: Path, problems: list[SpecProblem]
) -> PipelineSpec | None:
    """The pipeline at `prefix` of `file` (`pipelines[2]`, or "" for a top-level one); None,
    with every mistake added to `problems`, when it is not valid."""
    if not isinstance(entry, Mapping):
        message = "must be a mapping with `source` and `sink`"
        problems.append(SpecProblem(file, None, prefix or None, message))
        return None
    label = pipeline_label(entry)
    before = len(problems)

    def report(field: str, message: str) -> None:
        problems.append(SpecProblem(file, label, field, message))

    spec = Section(entry, "", report)
    source = read_source(spec.section("source", required=True))
    sink = read_sink(spec.section("sink", required=True))
    name = read_name(spec, label)
    asset_key = read_asset_key(spec, sink)
    group = read_group(spec, source)
    operations = _read_operations(spec, sink)
    spec.finish()
    if source is None or sink is None or len(problems) > before:
        return None
    check_pipeline(source, sink, operations["partitions"], report)
    if len(problems) > before:
        return None
    source = with_cdc_defaults(source, name)
    return PipelineSpec(name, file, source, sink, asset_key, group, **operations)


def _read_operations(spec: Section, sink: SinkSpec | None) -> _Operations:
    return _Operations(
        description=spec.text("description"),
        schedule=read_schedule(spec),
        freshness=read_freshness(spec),
        tags=read_tags(spec),
        owners=read_owners(spec),
        partitions=read_partitions(spec.section("partitions")),
        checks=read_checks(spec.section("checks"), sink.strategy.unique_key if sink else ()),
    )


def pipeline_label(entry: Mapping[str, Any]) -> str:
    """The pipeline's name for messages: `name`, else derived from the sink target."""
    name = entry.get("name")
    if isinstance(name, str):
        return name
    sink = _mapping(entry.get("sink"))
    table = _mapping(sink.get("table"))
    if table.get("schema") and table.get("name"):
        return dagster_name(f"{table['schema']}_{table['name']}")
    path = sink.get("path")
    if isinstance(path, str):
        return dagster_name(Path(path.rstrip("/")).name) or "pipeline"
    return "pipeline"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}

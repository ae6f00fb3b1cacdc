"""What a file declares for the whole project, next to its pipelines: `connections:` (with each
source connection's staleness `sensor:`) and `groups:` (settings of an asset group)."""

from __future__ import annotations

from pathlib import Path

from pgflow.config.model import CONNECTION_TYPES, ConnectionSpec, GroupSpec, SensorSpec
from pgflow.config.read_asset import group_problem
from pgflow.config.read_schedule import read_schedule
from pgflow.config.read_session import read_session
from pgflow.config.reader import Section

# Top-level keys a file may hold next to one pipeline's `source` and `sink`.
FILE_KEYS = ("connections", "groups")


def read_connections(top: Section, file: Path) -> dict[str, ConnectionSpec]:
    """`connections: {<id>: {type, sensor, set_role, session_settings}}`; a null entry is an
    env connection."""
    result = {}
    for connection_id, entry in top.entries("connections"):
        if entry is None:
            result[connection_id] = ConnectionSpec(connection_id, "env", file, SensorSpec())
            continue
        kind = entry.choice("type", CONNECTION_TYPES, default="env")
        sensor = _read_sensor(entry.section("sensor"))
        session = read_session(entry)
        entry.finish()
        result[connection_id] = ConnectionSpec(connection_id, kind, file, sensor, session)
    return result


def _read_sensor(section: Section | None) -> SensorSpec:
    """`sensor: {minimum_interval_seconds, running}` of a source connection's staleness sensor."""
    if section is None:
        return SensorSpec()
    interval = section.positive_int("minimum_interval_seconds")
    running = section.flag("running")
    section.finish()
    return SensorSpec(interval or SensorSpec.minimum_interval_seconds, running)


def read_groups(top: Section, file: Path) -> dict[str, GroupSpec]:
    """`groups: {<group>: {schedule: ...}}`: settings for a whole asset group."""
    result = {}
    for name, entry in top.entries("groups", required=True):
        if entry is None:
            continue
        problem = group_problem(name)
        if problem:
            top.problem(f"groups.{name}", problem)
        schedule = read_schedule(entry)
        entry.finish()
        result[name] = GroupSpec(name, file, schedule)
    return result

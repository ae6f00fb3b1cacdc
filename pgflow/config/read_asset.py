"""The fields that name and describe a pipeline's Dagster asset: name, asset_key, group, tags
and owners, each held to the rules Dagster itself enforces (it refuses anything else)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pgflow.config.model import SinkSpec, SourceSpec
from pgflow.config.naming import dagster_name, target_key
from pgflow.config.reader import Section

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PART = re.compile(r"^[A-Za-z0-9_-]+$")
_GROUP = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}")
_TAG_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
_OWNERS_EXAMPLE = "e.g. [team:data-platform, ana@example.com]"


def group_problem(group: str) -> str | None:
    """Why `group` cannot name a Dagster asset group (a pipeline's or one under `groups:`)."""
    if _GROUP.match(group):
        return None
    return f"'{group}' must be letters, digits and _ (segments joined by /)"


def read_name(spec: Section, label: str) -> str:
    """`name:`, by default the label derived from the sink target."""
    name = spec.text("name") or label
    if not _NAME.match(name):
        spec.problem("name", f"'{name}' must be letters, digits and _ (not starting with a digit)")
    return name


def read_group(spec: Section, source: SourceSpec | None) -> str:
    """`group:`, by default the source connection id made a valid Dagster group name."""
    group = spec.text("group")
    problem = group_problem(group) if group is not None else None
    if problem:
        spec.problem("group", problem)
    if group:
        return group
    connection_id = source.connection_id if source else None
    return dagster_name(connection_id) if connection_id else "pgflow"


def read_asset_key(spec: Section, sink: SinkSpec | None) -> tuple[str, ...]:
    """`asset_key: a/b`, by default `<schema>/<table>` of the target (or `delta/<folder>`)."""
    raw = spec.text("asset_key")
    if raw is not None:
        parts = tuple(raw.strip("/").split("/"))
        if not all(_KEY_PART.match(p) for p in parts):
            spec.problem(
                "asset_key",
                f"'{raw}' must be parts of letters, digits, _ or - joined by /, e.g. landing/orders",
            )
        return parts
    if sink is None or (sink.type != "delta" and sink.table is None):
        return ("pipeline",)  # a missing sink or table was reported already
    return target_key(sink.type, sink.table, sink.path)


def read_tags(spec: Section) -> dict[str, str]:
    raw = spec.raw("tags")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in raw.items()
    ):
        spec.problem(
            "tags", "must be a mapping of tag names to string values, e.g. {domain: sales}"
        )
        return {}
    tags = {k: str(v) for k, v in raw.items()}
    allowed = "must be letters, digits, _, - or . (at most 63 characters)"
    for key, value in tags.items():
        if not _TAG_KEY.match(key):
            spec.problem("tags", f"tag name '{key}' {allowed}")
        elif not _TAG_VALUE.match(value):
            spec.problem(f"tags.{key}", f"'{value}' {allowed}")
    return tags


def read_owners(spec: Section) -> tuple[str, ...]:
    raw = spec.raw("owners")
    if raw is None:
        return ()
    owners = [raw] if isinstance(raw, str) else raw
    if not isinstance(owners, list) or not owners:
        spec.problem("owners", f"must be a list of owners, {_OWNERS_EXAMPLE}, got {raw!r}")
        return ()
    for owner in owners:
        if not (isinstance(owner, str) and _valid_owner(owner)):
            spec.problem(
                "owners", f"'{owner}' must be an email address or team:<name>, {_OWNERS_EXAMPLE}"
            )
    return tuple(o for o in owners if isinstance(o, str))


def _valid_owner(owner: str) -> bool:
    return bool(_EMAIL.fullmatch(owner)) or (owner.startswith("team:") and len(owner) > 5)

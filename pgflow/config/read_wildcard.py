"""A schema-wide spec: a glob in `source.table.name` makes one pipeline per matching table.

This module reads what only such a spec has (`source.table.exclude` and `kinds`,
`source.options.keyless`, `tables:` overrides, `parallel_tables`) and checks what it must not
have (a sink table name, a Delta path without `{table}`). What remains is the template every
table's pipeline is made from (expand.py) and read like any other pipeline.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgflow.config.errors import SpecProblem
from pgflow.config.lines import key_line
from pgflow.config.model import (
    DEFAULT_PARALLEL_TABLES,
    KEYED_CHANGE_MODES,
    KEYLESS_POLICIES,
    RELATION_KINDS,
    ConnectionType,
    KeylessPolicy,
    RelationKind,
    WildcardSpec,
)
from pgflow.config.naming import dagster_name
from pgflow.config.reader import Report, Section

_GLOB_CHARACTERS = "*?["
TABLE_PLACEHOLDER = "{table}"
MAX_PARALLEL_TABLES = 16
# Pipeline fields a `tables:` entry may change (`strategy` and `options` are short for
# `sink.strategy` and `source.options`); a table's name, target and key are its own.
OVERRIDE_FIELDS = (
    "strategy",
    "options",
    "name",
    "asset_key",
    "description",
    "schedule",
    "freshness",
    "tags",
    "owners",
    "checks",
    "group",
)


@dataclass(frozen=True)
class WildcardEntry:
    """A schema-wide spec as read: its settings, its pipeline template and its overrides."""

    spec: WildcardSpec
    template: Mapping[str, Any]  # a pipeline mapping with the wildcard-only fields removed
    overrides: Mapping[str, Mapping[str, Any]]  # raw table name -> pipeline fields
    prefix: str  # where it stands in its file: `pipelines[2]`, or "" at top level
    override_lines: Mapping[str, int] = field(default_factory=dict)  # table -> its entry's line


def is_wildcard(entry: object) -> bool:
    """Whether a pipeline mapping names its source table with a glob."""
    name = _dig(entry, "source", "table", "name")
    return isinstance(name, str) and any(char in name for char in _GLOB_CHARACTERS)


def wildcard_label(entry: Mapping[str, Any]) -> str:
    """The spec's `name`, else its sink schema (or the Delta folder holding `{table}`)."""
    name = entry.get("name")
    if isinstance(name, str):
        return name
    schema = _dig(entry, "sink", "table", "schema")
    if isinstance(schema, str) and schema:
        return dagster_name(schema)
    path = _dig(entry, "sink", "path")
    if isinstance(path, str) and TABLE_PLACEHOLDER in path:
        folder = Path(path.split(TABLE_PLACEHOLDER)[0].rstrip("/")).name
        return dagster_name(folder) or "tables"
    return "tables"


def read_wildcard(
    entry: Mapping[str, Any],
    prefix: str,
    file: Path,
    problems: list[SpecProblem],
    line: int | None = None,
) -> WildcardEntry | None:
    """The schema-wide spec at `prefix` of `file`; None, with its problems reported, when it
    is not valid. The template's own fields are checked table by table (expand.py)."""
    label = wildcard_label(entry)
    before = len(problems)

    def report(field: str, message: str) -> None:
        problems.append(SpecProblem(file, label, field, message))

    template = copy.deepcopy(dict(entry))
    top = Section(template, "", report)
    table = Section(template["source"]["table"], "source.table", report)
    spec = WildcardSpec(
        name=label,
        file=file,
        connection_id=str(_dig(template, "source", "connection_id") or ""),
        connection_type=_connection_type(template),
        schema=table.text("schema", required=True) or "",
        pattern=str(template["source"]["table"]["name"]),
        exclude=_read_globs(table, "exclude"),
        kinds=_read_kinds(table),
        keyless=_read_keyless(template, report),
        parallel_tables=_read_parallel_tables(top),
        line=line,
    )
    overrides = _read_overrides(top)
    tables = entry.get("tables")
    lines = {name: key_line(tables, name) for name in overrides}
    _check_source_type(template, report)
    _check_sink(template, report)
    _check_kinds(spec.kinds, template, report)
    _strip_wildcard_fields(template)
    if len(problems) > before:
        return None
    found = {name: line for name, line in lines.items() if line is not None}
    return WildcardEntry(spec, template, overrides, prefix, found)


def _read_globs(table: Section, key: str) -> tuple[str, ...]:
    raw = table.raw(key)
    if raw is None:
        return ()
    globs = [raw] if isinstance(raw, str) else raw
    if not isinstance(globs, list) or not all(isinstance(g, str) and g for g in globs):
        table.problem(
            key, f'must be a list of table names or globs, e.g. ["tmp_*", audit_log], got {raw!r}'
        )
        return ()
    return tuple(globs)


def _read_kinds(table: Section) -> tuple[RelationKind, ...]:
    raw = table.raw("kinds")
    if raw is None:
        return ("table",)
    kinds = [raw] if isinstance(raw, str) else raw
    allowed = ", ".join(RELATION_KINDS)
    if not isinstance(kinds, list) or not kinds or any(k not in RELATION_KINDS for k in kinds):
        table.problem("kinds", f"must be a list of: {allowed} (default [table]); got {raw!r}")
        return ("table",)
    return tuple(k for k in RELATION_KINDS if k in kinds)


def _read_keyless(template: Mapping[str, Any], report: Report) -> KeylessPolicy:
    options = _dig(template, "source", "options")
    if not isinstance(options, Mapping) or "keyless" not in options:
        return "fail"
    section = Section(options, "source.options", report)
    keyless = section.choice("keyless", KEYLESS_POLICIES, default="fail")
    mode = _dig(template, "sink", "strategy", "mode")
    if keyless == "full_refresh" and mode in KEYED_CHANGE_MODES:
        section.problem(
            "keyless",
            f"full_refresh would make the target of a mode {mode} pipeline a copy of its "
            "source; use keyless: skip or fail",
        )
    return keyless


def _read_parallel_tables(top: Section) -> int:
    value = top.positive_int("parallel_tables")
    if value is not None and value > MAX_PARALLEL_TABLES:
        top.problem(
            "parallel_tables",
            f"must be at most {MAX_PARALLEL_TABLES} (each table being loaded holds a source "
            f"and a sink connection), got {value}",
        )
        return DEFAULT_PARALLEL_TABLES
    return value or DEFAULT_PARALLEL_TABLES


def _read_overrides(top: Section) -> dict[str, Mapping[str, Any]]:
    """`tables: {<table>: {<pipeline fields>}}`: each checked for its keys here, for its
    values when its table's pipeline is read."""
    result: dict[str, Mapping[str, Any]] = {}
    for name, entry in top.entries("tables", required=True):
        if entry is None:
            continue
        for key in entry.keys():  # noqa: SIM118 (a Section, not a dict)
            entry.raw(key)
            if key not in OVERRIDE_FIELDS:
                entry.problem(
                    key,
                    f"cannot be set for one table; allowed under tables.<table>: "
                    f"{', '.join(OVERRIDE_FIELDS)}",
                )
        result[name] = top.raw("tables")[name]
    return result


def _check_source_type(template: Mapping[str, Any], report: Report) -> None:
    if _dig(template, "source", "type") != "postgres":
        report(
            "source.table.name",
            "a glob selects tables of a postgres source; a delta source is one table: "
            "give its `path` and no table",
        )


def _check_sink(template: Mapping[str, Any], report: Report) -> None:
    """Every table keeps its own name: in the sink schema, or in the Delta path template."""
    sink = template.get("sink")
    if not isinstance(sink, Mapping):
        return  # reported when the first table's pipeline is read
    if sink.get("type") == "delta":
        path = sink.get("path")
        if isinstance(path, str) and TABLE_PLACEHOLDER not in path:
            report(
                "sink.path",
                f"'{path}' must hold {TABLE_PLACEHOLDER} with a glob source, so that each "
                f"table gets its own Delta table, e.g. /lake/landing/{TABLE_PLACEHOLDER}",
            )
        return
    table = sink.get("table")
    if isinstance(table, Mapping) and "name" in table:
        report(
            "sink.table.name",
            "must be left out with a glob source: each table keeps its own name in the sink "
            "schema (`table: {schema: landing}`); rename one table under `tables:` with "
            "`asset_key`, or give it a spec of its own",
        )
    if "asset_key" in template:
        report(
            "asset_key",
            "is each table's own: left out, it is <sink schema>/<table>; set one table's under "
            "`tables: {<table>: {asset_key: ...}}`",
        )


def _check_kinds(
    kinds: tuple[RelationKind, ...], template: Mapping[str, Any], report: Report
) -> None:
    """Views, materialized views and foreign tables have no WAL changes or row xmin to read."""
    strategy = _dig(template, "source", "options", "incremental_strategy")
    others = [k for k in kinds if k != "table"]
    if strategy in ("cdc", "xmin") and others:
        report(
            "source.table.kinds",
            f"{', '.join(others)} cannot be read with incremental_strategy: {strategy} (only "
            "tables have row changes to follow); list only `table`, or give them a spec of "
            "their own with incremental_strategy: full or column",
        )


def _strip_wildcard_fields(template: dict[str, Any]) -> None:
    """What only a schema-wide spec has: the table pipelines do not see it."""
    for key in ("tables", "parallel_tables", "name", "asset_key"):
        template.pop(key, None)
    table = template["source"]["table"] = dict(template["source"]["table"])
    for key in ("exclude", "kinds"):
        table.pop(key, None)
    options = template["source"].get("options")
    if isinstance(options, Mapping):
        template["source"]["options"] = {k: v for k, v in options.items() if k != "keyless"}


def _connection_type(template: Mapping[str, Any]) -> ConnectionType:
    return "vault" if _dig(template, "source", "connection_type") == "vault" else "env"


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value

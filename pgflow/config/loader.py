"""Find, parse and validate pipeline specs.

A spec file holds one pipeline (top-level `source` and `sink`, the dpone format) or a list of
them under `pipelines:`; any file may also declare `connections:`. Validation runs when the
code location loads and reports every problem with its file, pipeline and field.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from dagster._utils.schedules import is_valid_cron_string

from pgflow.config.checks_reader import read_checks
from pgflow.config.durations import parse_duration
from pgflow.config.errors import SpecError, SpecProblem
from pgflow.config.model import (
    ConnectionSpec,
    FreshnessSpec,
    GroupSpec,
    PartitionsSpec,
    PipelineSpec,
    Project,
    ScheduleSpec,
    SensorSpec,
    SinkSpec,
    SourceOptions,
    SourceSpec,
    StrategySpec,
    TableName,
)
from pgflow.config.naming import dagster_name, key_problems, target_key
from pgflow.config.reader import Section
from pgflow.config.sink_options import read_sink_options
from pgflow.config.support import unsupported_reason

DEFAULT_CONFIG_PATH = "pipelines"
CONNECTION_TYPES = ("env", "vault")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PART = re.compile(r"^[A-Za-z0-9_-]+$")
# Dagster's own rules for group names, owners and asset tags (it refuses anything else).
_GROUP = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}")
_TAG_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
_PIPELINE_KEYS = (
    "source",
    "sink",
    "name",
    "asset_key",
    "group",
    "description",
    "schedule",
    "freshness",
    "tags",
    "owners",
    "partitions",
    "checks",
)
# Top-level keys a file may hold next to one pipeline's `source` and `sink`.
_FILE_KEYS = ("connections", "groups")
# Postgres keeps the first NAMEDATALEN - 1 bytes of an identifier and silently drops the rest.
_MAX_IDENTIFIER_BYTES = 63
# Schemas a sink must not write into: Postgres' own, and pgflow's state (`_pgflow`).
_RESERVED_SINK_SCHEMAS = ("_pgflow", "information_schema")


class _SpecYamlLoader(yaml.SafeLoader):
    """safe_load, except that a key repeated in one mapping is an error, not a silent overwrite
    (`mode: incremental_merge` ... `mode: full_refresh` would otherwise keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # `<<: *anchor` merges may be overridden by explicit keys
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found key '{key_node.value}' twice; YAML would silently keep the last "
                    "value: write each key once",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def identifier_problem(name: str) -> str | None:
    """Why `name` cannot be a Postgres identifier pgflow reads or creates, or None.

    Any other text works: pgflow always quotes identifiers, so quotes, `;` and non-ASCII
    letters are part of the name, never SQL.
    """
    if not name.strip():
        return "is empty; name a table, schema or column"
    for char in name:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or (
            category == "Cf"
            and unicodedata.bidirectional(char)
            in ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")
        ):
            return (
                f"{name!r} holds the control character U+{ord(char):04X}; write the name "
                "without control characters"
            )
    size = len(name.encode("utf-8"))
    if size > _MAX_IDENTIFIER_BYTES:
        return (
            f"'{name}' is {size} bytes long; Postgres cuts names after {_MAX_IDENTIFIER_BYTES} "
            "bytes (UTF-8), so the table or column would not be the one named: shorten it"
        )
    return None


def env_var_for(connection_id: str) -> str:
    """`PGFLOW_CONN_<ID>`: upper-cased, anything but letters and digits as `_`."""
    return "PGFLOW_CONN_" + re.sub(r"[^A-Z0-9]", "_", connection_id.upper())


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("PGFLOW_CONFIG") or DEFAULT_CONFIG_PATH)


def discover_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [*path.rglob("*.yaml"), *path.rglob("*.yml")]
        return sorted(p for p in found if p.is_file())
    raise SpecError(
        [
            SpecProblem(
                path,
                None,
                None,
                "does not exist; set PGFLOW_CONFIG to a spec file or a folder of *.yaml specs",
            )
        ]
    )


def load_project(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Project:
    """Load and validate every spec under `path` (default: $PGFLOW_CONFIG or ./pipelines)."""
    environ = os.environ if environ is None else environ
    root = Path(path) if path is not None else config_path(environ)
    problems: list[SpecProblem] = []
    pipelines: list[PipelineSpec] = []
    connections: dict[str, ConnectionSpec] = {}
    groups: dict[str, GroupSpec] = {}
    for file in discover_files(root):
        file_pipelines, file_connections, file_groups = _load_file(file, problems)
        pipelines.extend(file_pipelines)
        connections.update(file_connections)
        _merge_groups(groups, file_groups, problems)
    _check_project(pipelines, connections, environ, problems)
    _check_groups(groups, pipelines, problems)
    if problems:
        raise SpecError(problems)
    return Project(pipelines=tuple(pipelines), connections=connections, groups=groups)


def _load_file(
    file: Path, problems: list[SpecProblem]
) -> tuple[list[PipelineSpec], dict[str, ConnectionSpec], dict[str, GroupSpec]]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(SpecProblem(file, None, None, f"cannot be read as UTF-8 text: {exc}"))
        return [], {}, {}
    try:
        document = yaml.load(text, Loader=_SpecYamlLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        problems.append(SpecProblem(file, None, None, f"is not valid YAML: {exc}"))
        return [], {}, {}
    if document is None:
        return [], {}, {}
    if not isinstance(document, Mapping):
        message = "must hold a mapping with `source` and `sink`, or `pipelines:`"
        problems.append(SpecProblem(file, None, None, message))
        return [], {}, {}

    def report_file(field: str, message: str) -> None:
        problems.append(SpecProblem(file, None, field, message))

    top = Section(document, "", report_file)
    connections = _read_connections(top, file)
    groups = _read_groups(top, file)
    if top.has("pipelines"):
        entries = top.raw("pipelines")
        if not isinstance(entries, list):
            top.problem("pipelines", "must be a list of pipelines, each with `source` and `sink`")
            entries = []
        fields = [f"pipelines[{i}]" for i in range(len(entries))]
        top.finish()
    elif top.has("source") or top.has("sink"):
        # `connections:` and `groups:` were read above; the pipeline is everything else.
        entries = [{k: v for k, v in document.items() if k not in _FILE_KEYS}]
        fields = [""]
    else:
        if not connections and not groups:
            top.problem("source", "is required: a spec holds `source` and `sink`, or `pipelines:`")
        top.finish()
        return [], connections, groups
    pipelines = []
    for entry, prefix in zip(entries, fields, strict=True):
        pipeline = _read_pipeline(entry, prefix, file, problems)
        if pipeline is not None:
            pipelines.append(pipeline)
    return pipelines, connections, groups


def _read_connections(top: Section, file: Path) -> dict[str, ConnectionSpec]:
    declared = top.section("connections")
    if declared is None:
        return {}
    result = {}
    for connection_id in declared.keys():  # noqa: SIM118 (a Section, not a dict)
        entry = declared.section(connection_id)
        kind = entry.text("type", choices=CONNECTION_TYPES, default="env") if entry else "env"
        sensor = _read_sensor(entry.section("sensor")) if entry else None
        if entry:
            entry.finish()
        result[connection_id] = ConnectionSpec(
            connection_id,
            kind,  # type: ignore[arg-type]
            file,
            sensor or SensorSpec(),
        )
    return result


def _read_sensor(section: Section | None) -> SensorSpec | None:
    """`sensor: {minimum_interval_seconds, running}` of a source connection's staleness sensor."""
    if section is None:
        return None
    interval = section.positive_int("minimum_interval_seconds")
    running = section.flag("running")
    section.finish()
    return SensorSpec(interval or SensorSpec.minimum_interval_seconds, running)


def _read_groups(top: Section, file: Path) -> dict[str, GroupSpec]:
    """`groups: {<group>: {schedule: ...}}`: settings for a whole asset group."""
    declared = top.section("groups")
    if declared is None:
        return {}
    result = {}
    for name in declared.keys():  # noqa: SIM118 (a Section, not a dict)
        entry = declared.section(name, required=True)
        if entry is None:
            continue
        if not _GROUP.match(name):
            declared.problem(name, f"'{name}' must be letters, digits and _ (segments joined by /)")
        schedule = _read_schedule(entry)
        entry.finish()
        result[name] = GroupSpec(name, file, schedule)
    return result


def _merge_groups(
    groups: dict[str, GroupSpec], found: dict[str, GroupSpec], problems: list[SpecProblem]
) -> None:
    for name, group in found.items():
        first = groups.setdefault(name, group)
        if first is not group:
            problems.append(
                SpecProblem(
                    group.file,
                    None,
                    f"groups.{name}",
                    f"is also declared in {first.file}; declare each group once",
                )
            )


def _check_groups(
    groups: dict[str, GroupSpec], pipelines: list[PipelineSpec], problems: list[SpecProblem]
) -> None:
    used = {p.group for p in pipelines}
    for name, group in groups.items():
        if name not in used:
            known = ", ".join(sorted(used)) or "none yet"
            problems.append(
                SpecProblem(
                    group.file,
                    None,
                    f"groups.{name}",
                    f"no pipeline is in group '{name}' (groups in use: {known}); "
                    "fix the name or set `group:` on the pipelines",
                )
            )


def _read_pipeline(
    entry: Any, prefix: str, file: Path, problems: list[SpecProblem]
) -> PipelineSpec | None:
    if not isinstance(entry, Mapping):
        message = "must be a mapping with `source` and `sink`"
        problems.append(SpecProblem(file, None, prefix or None, message))
        return None
    label = _pipeline_label(entry)
    before = len(problems)

    def report(field: str, message: str) -> None:
        problems.append(SpecProblem(file, label, field, message))

    spec = Section(entry, "", report)
    source = _read_source(spec.section("source", required=True), report)
    sink = _read_sink(spec.section("sink", required=True), report)
    name = spec.text("name") or label
    if not _NAME.match(name):
        spec.problem("name", f"'{name}' must be letters, digits and _ (not starting with a digit)")
    asset_key = _read_asset_key(spec, sink)
    group = spec.text("group")
    if group is not None and not _GROUP.match(group):
        spec.problem("group", f"'{group}' must be letters, digits and _ (segments joined by /)")
    if not group:
        # Default: the source connection id, made a valid Dagster group name.
        connection_id = source.connection_id if source else None
        group = dagster_name(connection_id) if connection_id else "pgflow"
    description = spec.text("description")
    schedule = _read_schedule(spec)
    freshness = _read_freshness(spec)
    tags = _read_tags(spec)
    owners = _read_owners(spec)
    partitions = _read_partitions(spec.section("partitions"))
    checks = read_checks(spec.section("checks"), sink.strategy.unique_key if sink else ())
    spec.finish()
    if source is None or sink is None or len(problems) > before:
        return None
    _check_semantics(source, sink, report)
    if partitions is not None:
        _check_partitions(source, sink, report)
    if len(problems) > before:
        return None
    return PipelineSpec(
        name=name,
        file=file,
        source=_with_cdc_defaults(source, name),
        sink=sink,
        asset_key=asset_key,
        group=group,
        description=description,
        schedule=schedule,
        freshness=freshness,
        tags=tags,
        owners=owners,
        partitions=partitions,
        checks=checks,
    )


def _pipeline_label(entry: Mapping[str, Any]) -> str:
    """The pipeline's name for messages: `name`, else derived from the sink target."""
    if isinstance(entry.get("name"), str):
        return entry["name"]
    sink = entry.get("sink") if isinstance(entry.get("sink"), Mapping) else {}
    table = sink.get("table") if isinstance(sink.get("table"), Mapping) else {}
    if table.get("schema") and table.get("name"):
        return dagster_name(f"{table['schema']}_{table['name']}")
    if isinstance(sink.get("path"), str):
        return dagster_name(Path(sink["path"].rstrip("/")).name) or "pipeline"
    return "pipeline"


def _read_table(section: Section, required: bool) -> TableName | None:
    table = section.section("table", required=required)
    if table is None:
        return None
    schema = _identifier(table, "schema", required=True)
    name = _identifier(table, "name", required=True)
    table.finish()
    return TableName(schema, name) if schema and name else None


def _identifier(section: Section, key: str, *, required: bool = False) -> str | None:
    """A table, schema or column name: any text Postgres can keep as it is (it is quoted)."""
    value = section.text(key, required=required)
    if value is None:
        return None
    problem = identifier_problem(value)
    if problem:
        section.problem(key, problem)
        return None
    return value


def _identifiers(section: Section, key: str) -> tuple[str, ...] | None:
    names = section.names(key)
    if names is None:
        return None
    problems = [p for p in map(identifier_problem, names) if p]
    for problem in problems:
        section.problem(key, problem)
    return None if problems else names


def _read_endpoint(section: Section, types: tuple[str, ...]) -> tuple[str | None, ...]:
    kind = section.text("type", required=True, choices=types)
    connection_type = section.text("connection_type", choices=CONNECTION_TYPES, default="env")
    connection_id = section.text("connection_id")
    path = section.text("path")
    if path is not None and any(unicodedata.category(c) == "Cc" for c in path):
        section.problem("path", f"{path!r} holds a control character; write a plain path or URI")
        path = None
    if kind == "postgres" and not connection_id:
        section.problem("connection_id", "is required for type postgres (a connection name)")
    if kind == "delta" and not path:
        section.problem("path", "is required for type delta (a folder or object-store URI)")
    return kind, connection_type, connection_id, path


def _reserved_schema(schema: str) -> bool:
    lowered = schema.lower()
    return lowered in _RESERVED_SINK_SCHEMAS or lowered.startswith("pg_")


def _read_source(section: Section | None, report: Any) -> SourceSpec | None:
    if section is None:
        return None
    kind, connection_type, connection_id, path = _read_endpoint(section, ("postgres", "delta"))
    table = _read_table(section, required=kind == "postgres")
    options_section = section.section("options")
    options = _read_source_options(options_section) if options_section else SourceOptions()
    section.finish()
    if kind is None:
        return None
    return SourceSpec(kind, connection_id, connection_type, table, path, options)  # type: ignore[arg-type]


def _read_source_options(o: Section) -> SourceOptions:
    options = SourceOptions(
        incremental_strategy=o.text(
            "incremental_strategy", choices=("full", "column", "xmin", "cdc"), default="full"
        ),  # type: ignore[arg-type]
        incremental_column=_identifier(o, "incremental_column"),
        lookback=_read_lookback(o),
        on_null_cursor=o.text(
            "on_null_cursor", choices=("exclude", "include", "fail"), default="exclude"
        ),  # type: ignore[arg-type]
        slot_name=o.text("slot_name"),
        publication_name=o.text("publication_name"),
        snapshot=o.text("snapshot", choices=("initial", "never"), default="initial"),  # type: ignore[arg-type]
        auto_cleanup=o.flag("auto_cleanup"),
        deleted_column=_identifier(o, "deleted_column"),
        on_truncate=o.text("on_truncate", choices=("apply", "fail"), default="apply"),  # type: ignore[arg-type]
        target_batch_size=o.positive_int("target_batch_size"),
        max_changes_per_run=o.positive_int("max_changes_per_run"),
        include_columns=_identifiers(o, "include_columns"),
        reset=o.flag("reset"),
        deletes=o.text("deletes", choices=("none", "cdf", "key_pass"), default="none"),  # type: ignore[arg-type]
    )
    o.finish()
    return options


def _read_lookback(o: Section) -> timedelta | Decimal | None:
    """A duration ('5 minutes') for date/time cursors, a number (100) for numeric ones."""
    raw = o.raw("lookback")
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if raw < 0 or not math.isfinite(raw):
            o.problem("lookback", f"{raw} must be a number of 0 or more")
            return None
        return Decimal(str(raw))
    try:
        return parse_duration(raw)
    except ValueError as exc:
        o.problem("lookback", str(exc))
        return None


def _read_sink(section: Section | None, report: Any) -> SinkSpec | None:
    if section is None:
        return None
    kind, connection_type, connection_id, path = _read_endpoint(section, ("postgres", "delta"))
    table = _read_table(section, required=kind == "postgres")
    if table is not None and _reserved_schema(table.schema):
        section.problem(
            "table.schema",
            f"'{table.schema}' is reserved (Postgres' own schemas, pgflow's state in _pgflow); "
            "write the target into a schema of your own, e.g. landing",
        )
        table = None
    strategy_section = section.section("strategy", required=True)
    strategy = _read_strategy(strategy_section) if strategy_section else None
    numeric_as = read_sink_options(section.section("options"), kind)
    section.finish()
    if kind is None or strategy is None:
        return None
    return SinkSpec(kind, connection_id, connection_type, table, strategy, path, numeric_as)  # type: ignore[arg-type]


def _read_strategy(s: Section) -> StrategySpec | None:
    mode = s.text(
        "mode",
        required=True,
        choices=(
            "full_refresh",
            "incremental_append",
            "incremental_merge",
            "replace",
            "partition_replace",
        ),
    )
    strategy = StrategySpec(
        mode=mode or "full_refresh",  # type: ignore[arg-type]
        method=s.text("method", choices=("truncate_insert", "exchange"), default="truncate_insert"),  # type: ignore[arg-type]
        unique_key=_identifiers(s, "unique_key") or (),
        merge_policy=s.text(
            "merge_policy",
            choices=("delete_insert", "upsert", "shadow_swap"),
            default="delete_insert",
        ),  # type: ignore[arg-type]
        duplicate_policy=s.text("duplicate_policy", choices=("fail", "keep_last"), default="fail"),  # type: ignore[arg-type]
        only_new_rows=s.flag("only_new_rows"),
        custom_predicate=s.text("custom_predicate"),
        partition_column=_identifier(s, "partition_column"),
        native_mode=s.text("native_mode", choices=("auto", "required", "disabled"), default="auto"),  # type: ignore[arg-type]
        on_schema_change=s.text(
            "on_schema_change", choices=("fail", "add_columns", "sync"), default="add_columns"
        ),  # type: ignore[arg-type]
        fillfactor=_read_fillfactor(s),
        parallelism=_read_parallelism(s),
    )
    s.finish()
    return strategy if mode else None


MAX_PARALLELISM = 32


def _read_parallelism(s: Section) -> int:
    value = s.positive_int("parallelism")
    if value is not None and value > MAX_PARALLELISM:
        s.problem(
            "parallelism",
            f"must be at most {MAX_PARALLELISM} (each stream holds a source and a sink "
            f"connection), got {value}; about one stream per sink CPU is enough",
        )
        return 1
    return value or 1


def _read_fillfactor(s: Section) -> int | None:
    value = s.positive_int("fillfactor")
    if value is not None and not 10 <= value <= 100:
        s.problem(
            "fillfactor",
            f"must be a percentage from 10 to 100 (Postgres' range), got {value}; 90 leaves "
            "room for updated rows",
        )
        return None
    return value


def _read_asset_key(spec: Section, sink: SinkSpec | None) -> tuple[str, ...]:
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


def _read_schedule(spec: Section) -> ScheduleSpec | None:
    raw = spec.raw("schedule")
    if raw is None:
        return None
    if isinstance(raw, str):
        cron, timezone = raw, "UTC"
    elif isinstance(raw, Mapping):
        section = spec.section("schedule")
        assert section is not None
        cron = section.text("cron", required=True) or ""
        timezone = section.text("timezone", default="UTC") or "UTC"
        section.finish()
    else:
        spec.problem("schedule", "must be a cron string or a mapping with `cron` and `timezone`")
        return None
    if cron and not is_valid_cron_string(cron):
        spec.problem(
            "schedule", f"'{cron}' is not a valid cron expression, e.g. '0 * * * *' (hourly)"
        )
        return None
    if not _valid_timezone(timezone):
        spec.problem(
            "schedule",
            f"timezone '{timezone}' is unknown; use an IANA name such as UTC or Europe/Berlin",
        )
        return None
    return ScheduleSpec(cron, timezone) if cron else None


def _read_partitions(section: Section | None) -> PartitionsSpec | None:
    """`partitions: {type: daily | monthly, start: YYYY-MM-DD, timezone, end_offset}`."""
    if section is None:
        return None
    kind = section.text("type", required=True, choices=("daily", "monthly"))
    start = _read_date(section, "start")
    timezone = section.text("timezone", default="UTC") or "UTC"
    if not _valid_timezone(timezone):
        section.problem(
            "timezone", f"'{timezone}' is unknown; use an IANA name such as UTC or Europe/Berlin"
        )
    offset = section.raw("end_offset")
    if offset is not None and (isinstance(offset, bool) or offset not in (0, 1)):
        section.problem(
            "end_offset",
            f"must be 0 (complete periods only) or 1 (also the current one), got {offset!r}",
        )
    section.finish()
    if kind == "monthly" and start is not None and start.day != 1:
        section.problem(
            "start",
            f"'{start}' must be the first day of a month for monthly partitions, e.g. {start:%Y-%m}-01",
        )
        return None
    if kind is None or start is None:
        return None
    return PartitionsSpec(kind, start, timezone, int(offset or 0))  # type: ignore[arg-type]


def _read_date(section: Section, key: str) -> date | None:
    raw = section.raw(key)
    if isinstance(raw, date):  # YAML reads an unquoted 2026-01-01 as a date
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    section.problem(key, f"must be a date written YYYY-MM-DD, e.g. 2026-01-01, got {raw!r}")
    return None


def _check_partitions(source: SourceSpec, sink: SinkSpec, report: Any) -> None:
    strategy = sink.strategy
    if strategy.mode != "partition_replace":
        report(
            "partitions",
            f"time partitions need sink.strategy.mode partition_replace (this pipeline uses "
            f"{strategy.mode}): each Dagster partition replaces its slice of partition_column",
        )
    if source.type != "postgres":
        report("partitions", "time partitions need a postgres source")


def _valid_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _read_freshness(spec: Section) -> FreshnessSpec | None:
    raw = spec.raw("freshness")
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            return _freshness(spec, parse_duration(raw), None)
        if (
            isinstance(raw, Mapping)
            and set(raw) <= {"fail_after", "warn_after"}
            and "fail_after" in raw
        ):
            warn = parse_duration(raw["warn_after"]) if raw.get("warn_after") else None
            fail = parse_duration(raw["fail_after"])
            if warn is not None and warn >= fail:
                spec.problem("freshness", "warn_after must be shorter than fail_after")
                return None
            return _freshness(spec, fail, warn)
    except ValueError as exc:
        spec.problem("freshness", str(exc))
        return None
    spec.problem(
        "freshness",
        "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after",
    )
    return None


def _freshness(spec: Section, fail: timedelta, warn: timedelta | None) -> FreshnessSpec | None:
    # Dagster's freshness policies count in whole minutes and refuse shorter windows.
    if min(fail, warn or fail) < timedelta(minutes=1):
        spec.problem("freshness", "windows must be at least 1 minute (Dagster's resolution)")
        return None
    return FreshnessSpec(fail_after=fail, warn_after=warn)


def _read_tags(spec: Section) -> dict[str, str]:
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


def _read_owners(spec: Section) -> tuple[str, ...]:
    raw = spec.raw("owners")
    if raw is None:
        return ()
    owners = [raw] if isinstance(raw, str) else raw
    example = "e.g. [team:data-platform, ana@example.com]"
    if not isinstance(owners, list) or not owners:
        spec.problem("owners", f"must be a list of owners, {example}, got {raw!r}")
        return ()
    for owner in owners:
        if not (isinstance(owner, str) and _valid_owner(owner)):
            spec.problem("owners", f"'{owner}' must be an email address or team:<name>, {example}")
    return tuple(o for o in owners if isinstance(o, str))


def _valid_owner(owner: str) -> bool:
    return bool(_EMAIL.fullmatch(owner)) or (owner.startswith("team:") and len(owner) > 5)


def _check_semantics(source: SourceSpec, sink: SinkSpec, report: Any) -> None:
    strategy, options = sink.strategy, source.options
    if strategy.mode == "incremental_merge" and not strategy.unique_key:
        report(
            "sink.strategy.unique_key",
            "is required for mode incremental_merge: list the key column(s), e.g. [id]",
        )
    if strategy.only_new_rows and not strategy.unique_key:
        report(
            "sink.strategy.unique_key",
            "is required with only_new_rows: true (it decides which rows are new)",
        )
    if sink.type == "delta" and strategy.fillfactor is not None:
        report(
            "sink.strategy.fillfactor",
            "applies to postgres sinks only (a Delta table's Parquet files have no free space "
            "to tune); remove it",
        )
    if strategy.parallelism > 1 and (
        sink.type != "postgres" or strategy.mode != "full_refresh" or strategy.method != "exchange"
    ):
        report(
            "sink.strategy.parallelism",
            "applies to postgres sinks with mode full_refresh and method exchange (the only "
            "load whose new table can be filled by several connections before one swap); "
            "remove it or use method: exchange",
        )
    if strategy.mode == "replace" and not strategy.custom_predicate:
        report(
            "sink.strategy.custom_predicate",
            "is required for mode replace: a SQL condition on the target, e.g. \"order_date >= '2026-01-01'\"",
        )
    if strategy.mode == "partition_replace" and not strategy.partition_column:
        report(
            "sink.strategy.partition_column",
            "is required for mode partition_replace: the column that decides each row's partition",
        )
    if options.incremental_strategy == "column" and not options.incremental_column:
        report(
            "source.options.incremental_column",
            "is required with incremental_strategy: column: name the cursor column, e.g. updated_at",
        )
    if source.type == "postgres":
        _check_incremental_read(options, strategy, report)
    if source.type == "delta":
        _check_delta_source(options, sink, report)
    elif options.deletes != "none":
        report(
            "source.options.deletes",
            "applies to delta sources only; a postgres source's deletes reach the target "
            "through CDC (incremental_strategy: cdc) or a reset",
        )
    reason = unsupported_reason(source, sink)
    if reason:
        report(*reason)


def _check_delta_source(options: SourceOptions, sink: SinkSpec, report: Any) -> None:
    if options.incremental_strategy != "full":
        report(
            "source.options.incremental_strategy",
            "applies to postgres sources only; a delta source is read by table version",
        )
    if sink.type != "postgres" or sink.strategy.mode != "incremental_merge":
        report(
            "sink.strategy.mode",
            "a delta source is synced into Postgres by key (hash-diff upsert): use a postgres "
            "sink with mode incremental_merge and unique_key",
        )


# Incremental reads re-read rows (the boundary value, the lookback window), so only sink
# strategies that match rows by key can take them without duplicating or losing rows.
_KEYED_FOR_INCREMENTAL = "incremental_merge, or incremental_append with only_new_rows: true"


def _check_incremental_read(options: SourceOptions, strategy: StrategySpec, report: Any) -> None:
    kind = options.incremental_strategy
    _check_strategy_only_options(options, report)
    if kind == "cdc":
        _check_replication_names(options, report)
    if kind == "full":
        return
    if strategy.mode == "incremental_append" and not strategy.only_new_rows:
        why = (
            "an update would be appended as a second row"
            if kind == "cdc"
            else "each run re-reads the rows at its starting point, which a plain append "
            "would insert twice"
        )
        report(
            "sink.strategy.only_new_rows",
            f"must be true with incremental_strategy: {kind}: {why}; or use mode incremental_merge",
        )
    elif strategy.mode not in ("incremental_append", "incremental_merge"):
        report(
            "sink.strategy.mode",
            f"{strategy.mode} cannot take an incremental read (incremental_strategy: {kind}): "
            "the read holds only the changed rows, and this mode would drop the rest; use "
            f"{_KEYED_FOR_INCREMENTAL}, or incremental_strategy: full",
        )


# Options that mean something for one incremental strategy only (None when not given).
_STRATEGY_ONLY = {
    "incremental_column": "column",
    "lookback": "column",
    "slot_name": "cdc",
    "publication_name": "cdc",
    "deleted_column": "cdc",
    "target_batch_size": "cdc",
    "max_changes_per_run": "cdc",
}


def _check_strategy_only_options(options: SourceOptions, report: Any) -> None:
    kind = options.incremental_strategy
    given = [name for name, owner in _STRATEGY_ONLY.items() if getattr(options, name) is not None]
    if options.auto_cleanup:
        given.append("auto_cleanup")
    for name in given:
        owner = _STRATEGY_ONLY.get(name, "cdc")
        if owner != kind:
            report(
                f"source.options.{name}",
                f"applies to incremental_strategy: {owner} only (this source is {kind}); "
                f"remove it or set incremental_strategy: {owner}",
            )


_REPLICATION_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def _check_replication_names(options: SourceOptions, report: Any) -> None:
    for name in ("slot_name", "publication_name"):
        value = getattr(options, name)
        if value is not None and not _REPLICATION_NAME.match(value):
            report(
                f"source.options.{name}",
                f"'{value}' must be 1 to 63 lower-case letters, digits or _ (a replication "
                "slot name's rule)",
            )


def _with_cdc_defaults(source: SourceSpec, pipeline: str) -> SourceSpec:
    """Slot and publication named after the pipeline unless the spec names them."""
    options = source.options
    if options.incremental_strategy != "cdc":
        return source
    default = f"pgflow_{pipeline.lower()}"[:63]
    named = replace(
        options,
        slot_name=options.slot_name or default,
        publication_name=options.publication_name or default,
    )
    return replace(source, options=named)


def _check_project(
    pipelines: list[PipelineSpec],
    declared: dict[str, ConnectionSpec],
    environ: Mapping[str, str],
    problems: list[SpecProblem],
) -> None:
    _check_unique(
        pipelines, lambda p: p.sink.target_id, "sink", "writes the same target as", problems
    )
    problems.extend(key_problems(pipelines))
    _check_unique(pipelines, lambda p: p.name, "name", "has the same name as", problems)
    _check_unique(
        [p for p in pipelines if p.source.options.incremental_strategy == "cdc"],
        lambda p: f"{p.source.connection_id}: slot {p.source.options.slot_name}",
        "source.options.slot_name",
        "uses the same replication slot as",
        problems,
    )
    for pipeline in pipelines:
        for side, endpoint in (("source", pipeline.source), ("sink", pipeline.sink)):
            message = _unknown_connection(
                endpoint.connection_id, endpoint.connection_type, declared, environ
            )
            if message:
                problems.append(
                    SpecProblem(pipeline.file, pipeline.name, f"{side}.connection_id", message)
                )


def _check_unique(
    pipelines: list[PipelineSpec], key: Any, field: str, verb: str, problems: list[SpecProblem]
) -> None:
    first_by_key: dict[str, PipelineSpec] = {}
    for pipeline in pipelines:
        value = key(pipeline)
        first = first_by_key.setdefault(value, pipeline)
        if first is not pipeline:
            problems.append(
                SpecProblem(
                    pipeline.file,
                    pipeline.name,
                    field,
                    f"{verb} pipeline '{first.name}' in {first.file} ({value}); "
                    "each pipeline needs its own",
                )
            )


def _unknown_connection(
    connection_id: str | None,
    connection_type: str,
    declared: dict[str, ConnectionSpec],
    environ: Mapping[str, str],
) -> str | None:
    """A connection is known when declared under `connections:` or configured for its type."""
    if connection_id is None:
        return None
    if connection_id in declared:
        spec = declared[connection_id]
        if spec.type != connection_type:
            return (
                f"connection '{connection_id}' is declared with type {spec.type} in {spec.file}, "
                f"but used here with connection_type {connection_type}; make them agree"
            )
        return None
    if connection_type == "env" and environ.get(env_var_for(connection_id)):
        return None
    if connection_type == "vault" and environ.get("VAULT_ADDR"):
        return None
    if connection_type == "vault":
        return (
            f"connection '{connection_id}' is unknown: set VAULT_ADDR (and VAULT_TOKEN or "
            f"VAULT_ROLE_ID/VAULT_SECRET_ID) or declare it under `connections:`"
        )
    return (
        f"connection '{connection_id}' is unknown: set {env_var_for(connection_id)} to a "
        f"libpq URI or declare it under `connections:`"
    )

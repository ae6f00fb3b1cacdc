"""A schema-wide spec made into one pipeline per table of its source schema.

Each matched table gets the spec's pipeline with its own name in the source and the sink (or
the Delta path template), its `tables:` override merged in, and, for a keyed strategy with no
`unique_key`, its primary key (or unique index on NOT NULL columns). Then it is read like any
other pipeline, so every rule of a spec holds for each table.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from pgflow.config.errors import SpecProblem
from pgflow.config.model import KEYED_CHANGE_MODES, Expansion, PipelineSpec, RelationKind
from pgflow.config.naming import key_part, quote_name
from pgflow.config.read_pipeline import read_pipeline
from pgflow.config.read_sink import read_strategy
from pgflow.config.read_source import default_slot_name
from pgflow.config.read_wildcard import TABLE_PLACEHOLDER, WildcardEntry
from pgflow.config.reader import Section
from pgflow.config.wildcards import ListedTable, SchemaListing

_LISTED_AT_MOST = 10  # table names a message lists before "and N more"


@dataclass
class Expanded:
    pipelines: list[PipelineSpec] = field(default_factory=list)
    problems: list[SpecProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def matches(
    table: ListedTable, pattern: str, exclude: tuple[str, ...], kinds: tuple[RelationKind, ...]
) -> bool:
    """Whether the glob takes `table`: its kind is listed, its raw, case-sensitive name matches
    `pattern` and no `exclude` glob (`"OrderLines"` matches `Order*`, not `order*`)."""
    return (
        table.kind in kinds
        and fnmatchcase(table.name, pattern)
        and not any(fnmatchcase(table.name, glob) for glob in exclude)
    )


def expand(entry: WildcardEntry, listing: SchemaListing) -> Expanded:
    """The pipelines of `entry` over `listing`, or the problems that stop it."""
    out = Expanded()
    selected = _select(entry, listing, out)
    if selected is None:
        return out
    keyless: list[str] = []
    for table in selected:
        raw, note = _table_pipeline(entry, table)
        if raw is None:
            if entry.spec.keyless == "fail":
                keyless.append(table.name)
            else:
                out.notes.append(_skipped_note(entry, table))
            continue
        pipeline = read_pipeline(raw, _field(entry, table), entry.spec.file, out.problems)
        if pipeline is not None:
            expansion = Expansion(
                entry.spec.name, table.kind, entry.spec.parallel_tables, note, table.dropped_at
            )
            line = entry.override_lines.get(table.name, entry.spec.line)
            out.pipelines.append(replace(pipeline, expansion=expansion, line=line))
    if keyless:
        out.problems.append(_keyless_problem(entry, keyless))
    out.problems[:] = collapse(out.problems, entry.spec.name)
    return out


def _select(
    entry: WildcardEntry, listing: SchemaListing, out: Expanded
) -> list[ListedTable] | None:
    """The tables the spec takes; None when that is nothing or not allowed (reported)."""
    spec = entry.spec
    where = f"schema {quote_name(spec.schema)} on connection '{spec.connection_id}'"
    if not listing.exists:
        _problem(
            out,
            entry,
            "source.table.schema",
            f"{where} does not exist (listed "
            f"{listing.listed_at}); fix the name, or run `pgflow specs refresh` if it "
            "was created since",
        )
        return None
    globbed = [
        t for t in listing.tables if t.kind in spec.kinds and fnmatchcase(t.name, spec.pattern)
    ]
    if not globbed:
        _problem(
            out,
            entry,
            "source.table.name",
            f"'{spec.pattern}' matches no "
            f"{'/'.join(spec.kinds)} of {where} ({_names(t.name for t in listing.tables) or 'it is empty'}); "
            "fix the glob, or run `pgflow specs refresh` if tables were added since",
        )
        return None
    selected = sorted(
        (t for t in globbed if matches(t, spec.pattern, spec.exclude, spec.kinds)),
        key=lambda table: table.name,
    )
    if not selected:
        _problem(
            out,
            entry,
            "source.table.exclude",
            f"leaves none of the {len(globbed)} tables '{spec.pattern}' matches; narrow exclude",
        )
        return None
    _check_overrides(entry, listing, selected, out)
    unreadable = [t.name for t in selected if not t.readable]
    if unreadable:
        _problem(
            out,
            entry,
            "source.table.name",
            f"the source role may not read "
            f"{_names(unreadable)} of {where}: GRANT SELECT on them to it, or add them "
            "to exclude",
        )
        return None
    return selected


def _check_overrides(
    entry: WildcardEntry, listing: SchemaListing, selected: list[ListedTable], out: Expanded
) -> None:
    taken = {t.name for t in selected}
    listed = {t.name for t in listing.tables}
    for name in entry.overrides:
        if name in taken:
            continue
        why = "is excluded by the spec" if name in listed else "is not in the schema"
        _problem(
            out,
            entry,
            f"tables.{name}",
            f"table {quote_name(name)} {why}; remove the "
            "entry, or fix its name (the raw, case-sensitive table name)",
        )


def _table_pipeline(
    entry: WildcardEntry, table: ListedTable
) -> tuple[dict[str, Any] | None, str | None]:
    """The pipeline mapping of one table and what the expansion decided for it; None when the
    table has no key for a keyed strategy and keyless is fail or skip."""
    raw = copy.deepcopy(dict(entry.template))
    raw["name"] = f"{entry.spec.name}_{key_part(table.name)}"
    raw["source"]["table"]["name"] = table.name
    sink = raw["sink"]
    if sink.get("type") == "delta" and isinstance(sink.get("path"), str):
        sink["path"] = sink["path"].replace(TABLE_PLACEHOLDER, key_part(table.name))
    elif isinstance(sink.get("table"), Mapping):
        sink["table"] = {**sink["table"], "name": table.name}
    options = raw["source"].setdefault("options", {}) or {}
    raw["source"]["options"] = options
    if options.get("incremental_strategy") == "cdc":
        options.setdefault("slot_name", default_slot_name(entry.spec.name))
    _merge_override(raw, entry.overrides.get(table.name, {}))
    strategy = raw["sink"].get("strategy")
    if not _keyed(strategy) or strategy.get("unique_key"):
        return raw, None
    if table.key:
        strategy["unique_key"] = list(table.key)
        return raw, None
    if entry.spec.keyless != "full_refresh" or strategy.get("mode") in KEYED_CHANGE_MODES:
        return None, None  # an update or delete is never turned into a full_refresh
    _as_full_refresh(raw)
    return raw, "no primary key or unique index: loaded with full_refresh (keyless: full_refresh)"


def _merge_override(raw: dict[str, Any], override: Mapping[str, Any]) -> None:
    """A table's `tables:` entry over its pipeline. A strategy naming another `mode` replaces
    the spec's strategy; otherwise mappings merge key by key and other values replace."""
    for key, value in override.items():
        if key == "strategy":
            base = raw["sink"].get("strategy")
            if (
                isinstance(value, Mapping)
                and isinstance(base, Mapping)
                and value.get("mode", base.get("mode")) == base.get("mode")
            ):
                raw["sink"]["strategy"] = _merged(base, value)
            else:
                raw["sink"]["strategy"] = copy.deepcopy(value)
        elif key == "options":
            raw["source"]["options"] = _merged(raw["source"].get("options") or {}, value)
        else:
            raw[key] = _merged(raw[key], value) if isinstance(raw.get(key), Mapping) else value


def _merged(base: Mapping[str, Any], top: object) -> Any:
    if not isinstance(top, Mapping):
        return copy.deepcopy(top)
    result = dict(base)
    for key, value in top.items():
        old = result.get(key)
        result[key] = _merged(old, value) if isinstance(old, Mapping) else copy.deepcopy(value)
    return result


def _keyed(strategy: object) -> bool:
    """Whether the strategy matches rows by key: StrategySpec.keyed of the raw mapping (its
    mistakes are reported when the table's pipeline is read)."""
    if not isinstance(strategy, Mapping):
        return False
    read = read_strategy(Section(strategy, "", lambda field, message: None))
    return read is not None and read.keyed


# Source options that only an incremental read uses: a full_refresh load drops them.
_INCREMENTAL_OPTIONS = (
    "incremental_strategy",
    "incremental_column",
    "lookback",
    "on_null_cursor",
    "slot_name",
    "publication_name",
    "snapshot",
    "auto_cleanup",
    "deleted_column",
    "on_truncate",
    "target_batch_size",
    "max_changes_per_run",
)


def _as_full_refresh(raw: dict[str, Any]) -> None:
    strategy = raw["sink"]["strategy"]
    kept = {k: strategy[k] for k in ("on_schema_change", "fillfactor") if k in strategy}
    raw["sink"]["strategy"] = {"mode": "full_refresh", "method": "truncate_insert", **kept}
    options = raw["source"]["options"]
    raw["source"]["options"] = {k: v for k, v in options.items() if k not in _INCREMENTAL_OPTIONS}


def collapse(problems: list[SpecProblem], wildcard: str) -> list[SpecProblem]:
    """The same problem in many tables' pipelines, once, for the whole spec."""
    seen: dict[tuple[str | None, str], list[SpecProblem]] = {}
    for problem in problems:
        seen.setdefault((problem.field, problem.message), []).append(problem)
    result = []
    for (field_path, message), same in seen.items():
        if len(same) == 1:
            result.append(same[0])
            continue
        tables = _names(p.pipeline or "" for p in same)
        result.append(
            SpecProblem(
                same[0].file,
                wildcard,
                field_path,
                f"{message} (in the pipelines of {len(same)} tables: {tables})",
            )
        )
    return result


def _keyless_problem(entry: WildcardEntry, names: list[str]) -> SpecProblem:
    return SpecProblem(
        entry.spec.file,
        entry.spec.name,
        "source.options.keyless",
        f"{_names(names)} {'has' if len(names) == 1 else 'have'} no primary key and no unique "
        "index on NOT NULL columns, which the strategy needs to match rows: set "
        "`keyless: full_refresh` (load them whole) or `keyless: skip`, give each a "
        "`unique_key` under `tables:`, or add them to exclude",
    )


def _skipped_note(entry: WildcardEntry, table: ListedTable) -> str:
    return (
        f"{entry.spec.file}: pipeline '{entry.spec.name}': table {quote_name(table.name)} is "
        "skipped (keyless: skip): it has no primary key and no unique index on NOT NULL columns"
    )


def _field(entry: WildcardEntry, table: ListedTable) -> str:
    return f"{entry.prefix}.tables.{table.name}" if entry.prefix else f"tables.{table.name}"


def _problem(out: Expanded, entry: WildcardEntry, field_path: str, message: str) -> None:
    out.problems.append(SpecProblem(entry.spec.file, entry.spec.name, field_path, message))


def _names(names: Iterable[str]) -> str:
    listed = [quote_name(n) for n in names]
    if len(listed) <= _LISTED_AT_MOST:
        return ", ".join(listed)
    return f"{', '.join(listed[:_LISTED_AT_MOST])} and {len(listed) - _LISTED_AT_MOST} more"

"""`pgflow specs`: what the schema-wide specs expand to.

`pgflow specs refresh` re-lists the source schema of every wildcard, rewrites the table caches
next to the specs and says, per wildcard, what changed since the last cache; it asks the
source again which tables each `source.query` reads (their `.queries.json`, the assets' deps).
`pgflow specs show <file>` prints the pipelines one spec file expands to, one row per table.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from pgflow.config.catalog_cache import CacheError, read_cache
from pgflow.config.environment import config_path
from pgflow.config.errors import SpecError
from pgflow.config.expand import matches
from pgflow.config.loader import discover_files, load_project
from pgflow.config.model import PipelineSpec, Project, WildcardSpec
from pgflow.config.naming import quote_name, quoted
from pgflow.config.wildcards import SchemaListing
from pgflow.sources.query_tables import live_query_inspector
from pgflow.sources.table_listing import live_lister

Listings = dict[tuple[str, str], SchemaListing]
_LISTED_AT_MOST = 20  # names a change line lists before "and N more"


def specs_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pgflow specs", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    refresh = actions.add_parser("refresh", help="re-list the source schemas, rewrite the caches")
    show = actions.add_parser("show", help="the pipelines a spec file expands to")
    show.add_argument("file", type=Path, help="a spec file")
    for sub in (refresh, show):
        sub.add_argument(
            "--config", help="spec file or folder (default: $PGFLOW_CONFIG or ./pipelines)"
        )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on a usage error, 0 for --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.action == "refresh":
            return refresh_main(args.config)
        return show_main(args.file, args.config)
    except SpecError as exc:
        print(exc)
        return 1


def refresh_main(config: str | None) -> int:
    root = Path(config) if config else config_path()
    before = {file: _cached(file) for file in discover_files(root)}
    inspector = live_query_inspector()
    project = load_project(root, lister=live_lister(), refresh=True, inspector=inspector)
    queries = [p for p in project.pipelines if p.source.query is not None]
    if not project.wildcards and not queries:
        print(f"pgflow: no schema-wide spec or source query under {root}; nothing to refresh")
        return 0
    if project.wildcards:
        _print_wildcards(project, before)
    if queries:
        _print_queries(queries)
    _print_notes(project.notes)
    return 0


def _print_wildcards(project: Project, before: dict[Path, Listings]) -> None:
    rows = [_refresh_row(project, w, before.get(w.file, {})) for w in project.wildcards]
    header = ("FILE", "SPEC", "SOURCE SCHEMA", "TABLES", "ASSETS", "ADDED", "DROPPED")
    print(f"pgflow: refreshed {len(project.wildcards)} schema-wide spec(s)")
    for line in _aligned([header, *(row.cells for row in rows)]):
        print("  " + line)
    for row in rows:
        for change in row.changes:
            print(f"  {row.cells[1]}: {change}")


def _print_queries(queries: list[PipelineSpec]) -> None:
    """One row per source query: the tables it reads (its asset's deps), or unknown."""
    header = ("FILE", "PIPELINE", "CONNECTION", "TABLES READ")
    rows = [
        (
            str(p.file),
            p.name,
            p.source.connection_id or "",
            "unknown" if p.source.reads is None else ", ".join(map(quoted, p.source.reads)),
        )
        for p in queries
    ]
    print(f"pgflow: refreshed the tables of {len(queries)} source query(ies)")
    for line in _aligned([header, *rows]):
        print("  " + line)


@dataclass(frozen=True)
class _RefreshRow:
    cells: tuple[str, ...]
    changes: tuple[str, ...]  # "added: a, b" / "dropped: c" lines


def _refresh_row(project: Project, wildcard: WildcardSpec, before: Listings) -> _RefreshRow:
    key = (wildcard.connection_id, wildcard.schema)
    after = _cached(wildcard.file).get(key)
    old = before.get(key)
    now = _matched(wildcard, after)
    was = _matched(wildcard, old)
    added = sorted(now - was)
    newly_dropped = sorted(_dropped(wildcard, after) - _dropped(wildcard, old))
    assets = sum(1 for p in project.pipelines if _expanded_from(p, wildcard))
    cells = (
        str(wildcard.file),
        wildcard.name,
        f"{quote_name(wildcard.schema)} on '{wildcard.connection_id}'",
        str(len(now)),
        str(assets),
        str(len(added)) if old is not None else f"{len(added)} (first listing)",
        str(len(newly_dropped)),
    )
    changes = [
        f"{what}: {_names(names)}"
        for what, names in (("added", added), ("dropped", newly_dropped))
        if names and old is not None
    ]
    return _RefreshRow(cells, tuple(changes))


def _matched(wildcard: WildcardSpec, listing: SchemaListing | None) -> set[str]:
    """The tables of `listing` the wildcard takes that are on the source (not dropped)."""
    if listing is None:
        return set()
    spec = (wildcard.pattern, wildcard.exclude, wildcard.kinds)
    return {t.name for t in listing.tables if not t.dropped_at and matches(t, *spec)}


def _dropped(wildcard: WildcardSpec, listing: SchemaListing | None) -> set[str]:
    if listing is None:
        return set()
    spec = (wildcard.pattern, wildcard.exclude, wildcard.kinds)
    return {t.name for t in listing.tables if t.dropped_at and matches(t, *spec)}


def show_main(file: Path, config: str | None) -> int:
    root = _root_for(file, config)
    project = load_project(root, lister=live_lister())
    wanted = file.resolve()
    pipelines = [p for p in project.pipelines if p.file.resolve() == wanted]
    names = {str(p.file) for p in pipelines} | {
        str(w.file) for w in project.wildcards if w.file.resolve() == wanted
    }
    notes = [note for note in project.notes if any(name in note for name in names)]
    if not pipelines and not names:
        print(f"pgflow: {file} is not a spec file under {root}")
        return 1
    header = ("SOURCE", "TARGET", "ASSET KEY", "STRATEGY", "UNIQUE KEY", "INCREMENTAL", "NOTE")
    rows = [_show_row(p, project.wildcards) for p in pipelines]
    print(f"pgflow: {file}: {len(pipelines)} pipeline(s)")
    for line in _aligned([header, *rows]):
        print("  " + line)
    _print_notes(notes)
    return 0


def _root_for(file: Path, config: str | None) -> Path:
    """--config, else the default spec folder when the file is in it (so explicit specs
    elsewhere in the project win as they do at load), else the file alone."""
    if config:
        return Path(config)
    default = config_path()
    if default.exists() and file.resolve().is_relative_to(default.resolve()):
        return default
    return file


def _show_row(pipeline: PipelineSpec, wildcards: Sequence[WildcardSpec]) -> tuple[str, ...]:
    source, sink = pipeline.source, pipeline.sink
    strategy = sink.strategy
    options = source.options
    incremental: str = options.incremental_strategy
    if options.incremental_column:
        incremental += f" ({options.incremental_column})"
    return (
        quoted(source.table) if source.table else "(query)" if source.query else str(source.path),
        quoted(sink.table) if sink.table else str(sink.path),
        "/".join(pipeline.asset_key),
        strategy.key,
        ", ".join(strategy.unique_key) if strategy.unique_key else "-",
        incremental,
        _note(pipeline, wildcards),
    )


def _note(pipeline: PipelineSpec, wildcards: Sequence[WildcardSpec]) -> str:
    if pipeline.source.query is not None:
        reads = pipeline.source.reads
        if reads is None:
            return "tables read: unknown until `pgflow specs refresh`"
        return f"reads {', '.join(map(quoted, reads))}"
    expansion = pipeline.expansion
    if expansion is not None:
        parts = [expansion.note] if expansion.note else []
        if expansion.dropped_at:
            parts.append(f"dropped at the source (found {expansion.dropped_at})")
        if expansion.kind != "table":
            parts.append(expansion.kind.replace("_", " "))
        return "; ".join(parts)
    beaten = [w.name for w in wildcards if _wildcard_takes(w, pipeline)]
    return f"explicit spec wins over {', '.join(beaten)}" if beaten else ""


def _wildcard_takes(wildcard: WildcardSpec, pipeline: PipelineSpec) -> bool:
    """Whether the wildcard's glob names this explicit spec's source table (its kind unknown
    here: the glob and excludes decide)."""
    table = pipeline.source.table
    if table is None or pipeline.source.connection_id != wildcard.connection_id:
        return False
    return (
        table.schema == wildcard.schema
        and fnmatchcase(table.name, wildcard.pattern)
        and not any(fnmatchcase(table.name, glob) for glob in wildcard.exclude)
    )


def _cached(file: Path) -> Listings:
    """The cache of a spec file; a broken one counts as none (the refresh replaces it)."""
    try:
        return read_cache(file)
    except CacheError:
        return {}


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _names(names: Sequence[str]) -> str:
    shown = [quote_name(n) for n in names[:_LISTED_AT_MOST]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _print_notes(notes: Sequence[str]) -> None:
    if notes:
        print("notes:")
        for note in notes:
            print(f"  - {note}")


def _expanded_from(pipeline: PipelineSpec, wildcard: WildcardSpec) -> bool:
    expansion = pipeline.expansion
    return (
        expansion is not None
        and expansion.wildcard == wildcard.name
        and pipeline.file == wildcard.file
    )

"""Schema-wide specs expanded while the project loads: each source schema listed once, from
the cache next to its spec or, without one (or on `pgflow specs refresh`), from the source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pgflow.config.catalog_cache import CacheError, read_cache, refreshed, write_cache
from pgflow.config.errors import SpecProblem
from pgflow.config.expand import expand
from pgflow.config.model import PipelineSpec, WildcardSpec
from pgflow.config.naming import quote_name, quoted
from pgflow.config.read_wildcard import WildcardEntry
from pgflow.config.wildcards import SchemaListing, TableLister

ListingKey = tuple[str, str]


@dataclass
class Expansions:
    """What the wildcards of a project made, and what stopped or was decided on the way."""

    pipelines: list[PipelineSpec] = field(default_factory=list)
    problems: list[SpecProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wildcards: list[WildcardSpec] = field(default_factory=list)
    listings: dict[ListingKey, SchemaListing] = field(default_factory=dict)


def expand_wildcards(
    entries: list[WildcardEntry], lister: TableLister | None, refresh: bool
) -> Expansions:
    result = Expansions(wildcards=[entry.spec for entry in entries])
    listed: dict[ListingKey, SchemaListing] = {}  # from the source during this load
    for file in dict.fromkeys(entry.spec.file for entry in entries):
        of_file = [entry for entry in entries if entry.spec.file == file]
        listings = _file_listings(file, of_file, lister, refresh, listed, result)
        for entry in of_file:
            listing = listings.get(_key(entry))
            if listing is not None:
                result.listings[_key(entry)] = listing
                expanded = expand(entry, listing)
                result.pipelines.extend(expanded.pipelines)
                result.problems.extend(expanded.problems)
                result.notes.extend(expanded.notes)
    return result


def _file_listings(
    file: Path,
    entries: list[WildcardEntry],
    lister: TableLister | None,
    refresh: bool,
    listed: dict[ListingKey, SchemaListing],
    result: Expansions,
) -> dict[ListingKey, SchemaListing]:
    """The listing each wildcard of `file` expands against; the cache rewritten when the
    source was listed for it."""
    try:
        cached = read_cache(file)
    except CacheError as exc:
        if not refresh:
            result.problems.append(SpecProblem(file, None, None, str(exc)))
            return {}
        cached = {}
    fresh: dict[ListingKey, SchemaListing] = {}
    for entry in entries:
        key = _key(entry)
        if key in fresh or (key in cached and not refresh):
            continue
        listing = listed.get(key) or _list(entry, lister, result)
        if listing is not None:
            listed[key] = listing
            fresh[key] = refreshed(cached.get(key), listing)
    if fresh:
        kept = {} if refresh else cached
        _write(file, {**kept, **fresh}, result)
    return {**cached, **fresh}


def _list(
    entry: WildcardEntry, lister: TableLister | None, result: Expansions
) -> SchemaListing | None:
    spec = entry.spec
    where = f"schema {quote_name(spec.schema)} on connection '{spec.connection_id}'"
    if lister is None:
        result.problems.append(
            SpecProblem(
                spec.file,
                spec.name,
                "source.table",
                f"no cached table list for {where}: run `pgflow specs refresh` where the "
                "source is reachable (it writes the cache next to the spec)",
            )
        )
        return None
    try:
        return lister(spec.connection_id, spec.connection_type, spec.schema)
    except Exception as exc:  # any failure to list is a problem of the spec's load
        result.problems.append(
            SpecProblem(
                spec.file,
                spec.name,
                "source.connection_id",
                f"cannot list the tables of {where} to expand '{spec.pattern}': {exc}; start "
                "the source, or load with the cache `pgflow specs refresh` writes",
            )
        )
        return None


def _write(file: Path, listings: dict[ListingKey, SchemaListing], result: Expansions) -> None:
    try:
        write_cache(file, listings.values())
    except OSError as exc:
        result.notes.append(
            f"{file}: the table cache cannot be written ({exc}); the source is listed at "
            "every load until it can be"
        )


def explicit_specs_win(pipelines: Iterable[PipelineSpec], notes: list[str]) -> list[PipelineSpec]:
    """An explicit spec for a table a wildcard also matches replaces the wildcard's pipeline."""
    pipelines = list(pipelines)
    explicit = {
        _source_id(p): p for p in pipelines if p.expansion is None and p.source.table is not None
    }
    kept = []
    for pipeline in pipelines:
        winner = explicit.get(_source_id(pipeline)) if pipeline.expansion else None
        if winner is None:
            kept.append(pipeline)
            continue
        assert pipeline.expansion is not None and pipeline.source.table is not None
        notes.append(
            f"{winner.file}: pipeline '{winner.name}' is the spec of source table "
            f"{quoted(pipeline.source.table)} on '{pipeline.source.connection_id}', which "
            f"wildcard '{pipeline.expansion.wildcard}' in {pipeline.file} also matches: the "
            "explicit spec wins"
        )
    return kept


def _source_id(pipeline: PipelineSpec) -> tuple[str | None, str | None, str | None]:
    table = pipeline.source.table
    if pipeline.source.type != "postgres" or table is None:
        return (None, None, None)
    return (pipeline.source.connection_id, table.schema, table.name)


def _key(entry: WildcardEntry) -> ListingKey:
    return (entry.spec.connection_id, entry.spec.schema)

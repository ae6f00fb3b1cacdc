"""The cache of the tables each `source.query` reads, so that its asset has them as deps.

`<spec dir>/<spec stem>.queries.json`, next to the spec (and its `.tables.json`), for the same
reason: loading the code location needs no source connection and every process builds the
same asset graph. One entry per query pipeline, keyed by pipeline, connection and the query's
digest (a changed query is looked up again). `pgflow specs refresh` rewrites it; a code
location started without an entry asks the source once (EXPLAIN, in a read-only transaction)
and writes it. A source that cannot be asked leaves the asset without deps, with a warning:
the lineage is a convenience, never a reason for the code location to fail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pgflow.config.cache_files import read_entries, render_lines, replace_file
from pgflow.config.model import (
    ConnectionSpec,
    ConnectionType,
    PipelineSpec,
    SessionSetup,
    TableName,
)

FORMAT = "pgflow.queries/1"

QueryKey = tuple[str, str, str]  # pipeline, connection id, query digest


class QueryCacheError(ValueError):
    """The cache file cannot be read (not JSON, another format): refresh it."""


@dataclass(frozen=True)
class QueryTables:
    """The tables one pipeline's query reads, as the source's planner said at `looked_up_at`."""

    pipeline: str
    connection_id: str
    digest: str
    tables: tuple[TableName, ...]
    looked_up_at: str  # ISO 8601, UTC

    @property
    def key(self) -> QueryKey:
        return (self.pipeline, self.connection_id, self.digest)


class QueryInspector(Protocol):
    """Asks one source connection which tables each query reads, one read-only transaction
    per query: a query's tables, or the reason it could not tell (a str, no secret in it).
    Raises ConnectionConfigError (or a psycopg error) when the source cannot be reached."""

    def __call__(
        self,
        connection_id: str,
        connection_type: ConnectionType,
        queries: Sequence[str],
        session: SessionSetup | None = None,
    ) -> dict[str, tuple[TableName, ...] | str]: ...


def query_digest(query: str) -> str:
    """The digest `query_shape.query_name` gives: blanks' layout ignored."""
    return hashlib.sha256(" ".join(query.split()).encode()).hexdigest()[:16]


def query_cache_path(spec_file: Path) -> Path:
    return spec_file.with_name(f"{spec_file.stem}.queries.json")


def query_key(pipeline: PipelineSpec) -> QueryKey:
    assert pipeline.source.query is not None
    return (pipeline.name, pipeline.source.connection_id or "", query_digest(pipeline.source.query))


def read_query_cache(spec_file: Path) -> dict[QueryKey, QueryTables]:
    """The entries cached for `spec_file`; {} when there is no cache."""
    path = query_cache_path(spec_file)

    def error(reason: str) -> QueryCacheError:
        return QueryCacheError(
            f"{path} is not a pgflow query cache ({reason}); delete it or run `pgflow specs "
            "refresh`"
        )

    entries = read_entries(path, FORMAT, "queries", _entry, error) or []
    return {entry.key: entry for entry in entries}


def write_query_cache(spec_file: Path, entries: Iterable[QueryTables]) -> Path:
    """Replace the cache of `spec_file` atomically (a reader sees the old or the new file)."""
    ordered = sorted(entries, key=lambda entry: entry.key)
    text = render_lines(FORMAT, "queries", (_render(entry) for entry in ordered))
    return replace_file(query_cache_path(spec_file), text)


def with_query_tables(
    pipelines: Sequence[PipelineSpec],
    connections: Mapping[str, ConnectionSpec],
    inspector: QueryInspector | None,
    refresh: bool,
    notes: list[str],
) -> list[PipelineSpec]:
    """`pipelines`, each query pipeline's `source.reads` set from the cache next to its spec,
    or (without an entry, or on `refresh`) from `inspector`; the cache rewritten when the
    source was asked. What could not be told is a note (its asset has no deps)."""
    found: dict[QueryKey, QueryTables] = {}
    asking = _Asking(connections, inspector, {}, notes)
    files = dict.fromkeys(p.file for p in pipelines if p.source.query is not None)
    for file in files:
        of_file = [p for p in pipelines if p.file == file and p.source.query is not None]
        found.update(_file_entries(file, of_file, asking, refresh))
    result = []
    for pipeline in pipelines:
        entry = found.get(query_key(pipeline)) if pipeline.source.query is not None else None
        if entry is not None:
            pipeline = replace(pipeline, source=replace(pipeline.source, reads=entry.tables))
        result.append(pipeline)
    return result


@dataclass
class _Asking:
    """What asking the sources needs during one load."""

    connections: Mapping[str, ConnectionSpec]
    inspector: QueryInspector | None
    down: dict[str, str]  # connection id -> why it could not be asked (once per load)
    notes: list[str]


def _file_entries(
    file: Path, pipelines: list[PipelineSpec], asking: _Asking, refresh: bool
) -> dict[QueryKey, QueryTables]:
    notes, inspector = asking.notes, asking.inspector
    try:
        cached = read_query_cache(file)
    except QueryCacheError as exc:
        notes.append(f"{exc}; it is rewritten once the source can be asked")
        cached = {}
    wanted = {query_key(p): p for p in pipelines}
    kept = {key: entry for key, entry in cached.items() if key in wanted}
    missing = [p for key, p in wanted.items() if refresh or key not in kept]
    if not missing or inspector is None:
        return kept  # without an inspector (pgflow report...): the cache alone, no noise
    fresh = _ask(missing, asking, inspector)
    entries = {**kept, **fresh}  # a refresh that failed keeps the entry it had
    if fresh or set(kept) != set(cached):  # new entries, or entries of gone queries dropped
        try:
            write_query_cache(file, entries.values())
        except OSError as exc:
            notes.append(
                f"{file}: the query cache cannot be written ({exc}); the source is asked at "
                "every load until it can be"
            )
    return entries


def _ask(
    pipelines: list[PipelineSpec], asking: _Asking, inspector: QueryInspector
) -> dict[QueryKey, QueryTables]:
    """One connection per source connection; one read-only transaction per query. A
    connection that failed once in this load is not tried again (its timeout each time)."""
    connections, notes = asking.connections, asking.notes
    fresh: dict[QueryKey, QueryTables] = {}
    for connection_id in dict.fromkeys(p.source.connection_id or "" for p in pipelines):
        of_connection = [p for p in pipelines if (p.source.connection_id or "") == connection_id]
        first = of_connection[0]
        queries = list(dict.fromkeys(p.source.query or "" for p in of_connection))
        declared = connections.get(connection_id)
        session = declared.session if declared is not None else None
        now = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            if connection_id in asking.down:
                raise ConnectionError(asking.down[connection_id])
            if session:
                told = inspector(connection_id, first.source.connection_type, queries, session)
            else:
                told = inspector(connection_id, first.source.connection_type, queries)
        except Exception as exc:  # any failure to ask: no lineage, never a failed load
            asking.down[connection_id] = str(exc)
            names = ", ".join(f"'{p.name}'" for p in of_connection)
            notes.append(
                f"cannot ask connection '{connection_id}' which tables the source queries of "
                f"pipeline(s) {names} read ({exc}); their assets have no upstream tables until "
                "the source is reachable at a load or `pgflow specs refresh` runs"
            )
            continue
        for pipeline in of_connection:
            tables = told.get(pipeline.source.query or "", "no answer")
            if isinstance(tables, str):
                notes.append(
                    f"{pipeline.file}: pipeline '{pipeline.name}': the tables its source.query "
                    f"reads are unknown ({tables}); its asset has no upstream tables"
                )
                continue
            entry = QueryTables(pipeline.name, connection_id, query_key(pipeline)[2], tables, now)
            fresh[entry.key] = entry
    return fresh


def _render(entry: QueryTables) -> dict[str, Any]:
    return {
        "pipeline": entry.pipeline,
        "connection_id": entry.connection_id,
        "digest": entry.digest,
        "looked_up_at": entry.looked_up_at,
        "tables": [[table.schema, table.name] for table in entry.tables],
    }


def _entry(item: dict[str, Any]) -> QueryTables:
    tables = tuple(TableName(str(schema), str(name)) for schema, name in item["tables"])
    return QueryTables(
        str(item["pipeline"]),
        str(item["connection_id"]),
        str(item["digest"]),
        tuple(sorted(tables, key=lambda t: (t.schema, t.name))),
        str(item["looked_up_at"]),
    )

"""Catalog sensors: tables added to or dropped from a source schema that a schema-wide spec reads.

One sensor per source connection with schema-wide specs, `pgflow_catalog_<connection>`,
covering every schema they read: one short session per tick for the OLTP database, as the
staleness sensors. Each tick lists those schemas and compares them with what the code location
was built from (its assets, and the cached listing the wildcards were expanded against):

- a table a wildcard would take (glob, exclude, kinds) that has no asset yet is named in the
  tick's message with the fix: `pgflow specs refresh`, then reload the code location. The
  sensor does not reload it: Dagster gives a sensor no public way to reload its own code
  location (only the webserver's GraphQL API, whose address a code location does not know),
  and a reload alone would change nothing before the cache next to the spec is refreshed.
- a table dropped at the source that still has an asset gets an `AssetObservation`
  (`pgflow/source_dropped: true`); its warehouse copy is kept.
- a table the cached listing has as dropped that is back at the source is named: its runs
  fail until a refresh.

The cursor holds what was reported, per kind, as long as it is still true, so each change is
reported once; a table that comes back and is dropped again is reported again.

No `from __future__ import annotations` here: Dagster inspects the sensor's resource params.
"""

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import dagster as dg

from pgflow.bindings.assets import asset_key
from pgflow.config.expand import matches
from pgflow.config.model import ConnectionType, PipelineSpec, Project, WildcardSpec
from pgflow.config.naming import dagster_name
from pgflow.config.wildcards import SchemaListing
from pgflow.connections.resource import PostgresConnections
from pgflow.sources.staleness import prepare_session
from pgflow.sources.table_listing import list_schema

DROPPED_KEY = "pgflow/source_dropped"
RELOAD = (
    "run `pgflow specs refresh`, then reload the code location (Deployment -> Reload in the "
    "UI, or restart it)"
)

T = TypeVar("T")
MESSAGE_TABLES = 20  # tables a tick's message lists per kind of change; the log lists all

Listings = Mapping[tuple[str, str], SchemaListing]


def catalog_sensor_name(connection_id: str) -> str:
    return f"pgflow_catalog_{dagster_name(connection_id)}"


@dataclass(frozen=True)
class Watched:
    """One schema a catalog sensor lists, and what the code location holds of it."""

    schema: str
    wildcards: tuple[WildcardSpec, ...]
    # Source table name -> the pipelines reading it (explicit or expanded): its assets.
    assets: dict[str, list[PipelineSpec]] = field(default_factory=dict)
    # Tables of the cached listing the wildcards were expanded against (skipped ones too).
    cached: frozenset[str] = frozenset()


def catalog_sensors(project: Project) -> list[dg.SensorDefinition]:
    """One sensor per source connection that a schema-wide spec reads, comparing the source
    with the listings the project was expanded from."""
    listings = {listing.cache_key: listing for listing in project.listings}
    by_connection: dict[str, list[WildcardSpec]] = defaultdict(list)
    for wildcard in project.wildcards:
        by_connection[wildcard.connection_id].append(wildcard)
    return [
        _sensor(project, connection_id, wildcards, listings)
        for connection_id, wildcards in sorted(by_connection.items())
    ]


def watched_schemas(
    project: Project, connection_id: str, wildcards: list[WildcardSpec], listings: Listings
) -> list[Watched]:
    """Per schema the wildcards of `connection_id` read: its assets and its cached tables."""
    watched = []
    for schema in sorted({w.schema for w in wildcards}):
        assets: dict[str, list[PipelineSpec]] = defaultdict(list)
        for pipeline in project.pipelines:
            table = pipeline.source.table
            if pipeline.source.connection_id == connection_id and table and table.schema == schema:
                assets[table.name].append(pipeline)
        listing = listings.get((connection_id, schema))
        cached = {t.name for t in listing.tables if not t.dropped_at} if listing else set()
        own = tuple(w for w in wildcards if w.schema == schema)
        watched.append(Watched(schema, own, dict(assets), frozenset(cached)))
    return watched


def _sensor(
    project: Project, connection_id: str, wildcards: list[WildcardSpec], listings: Listings
) -> dg.SensorDefinition:
    settings = project.sensor_settings(connection_id)
    status = dg.DefaultSensorStatus.RUNNING if settings.running else dg.DefaultSensorStatus.STOPPED
    watched = watched_schemas(project, connection_id, wildcards, listings)
    connection_type: ConnectionType = wildcards[0].connection_type
    schemas = ", ".join(w.schema for w in watched)

    @dg.sensor(
        name=catalog_sensor_name(connection_id),
        description=(
            f"Lists the schemas that schema-wide specs read on '{connection_id}' ({schemas}): "
            "names new tables they would take (to add them: `pgflow specs refresh`, then "
            "reload the code location) and reports each table dropped at the source on its "
            "asset (the warehouse copy is kept)."
        ),
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=status,
    )
    def _catalog(context: dg.SensorEvaluationContext, pg: PostgresConnections) -> dg.SensorResult:
        return evaluate(context, connection_id, connection_type, watched, pg)

    return _catalog


@dataclass(frozen=True)
class Added:
    table: str  # schema.name
    wildcards: tuple[WildcardSpec, ...]

    def line(self) -> str:
        specs = ", ".join(f"'{w.name}' ({w.file})" for w in self.wildcards)
        return f"{self.table} (matched by {specs})"


@dataclass(frozen=True)
class Dropped:
    schema: str
    name: str
    pipelines: tuple[PipelineSpec, ...]

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.name}"

    def assets(self) -> str:
        return ", ".join(asset_key(p).to_user_string() for p in self.pipelines)


def evaluate(
    context: dg.SensorEvaluationContext,
    connection_id: str,
    connection_type: ConnectionType,
    watched: list[Watched],
    pg: PostgresConnections,
) -> dg.SensorResult:
    # Connect errors from PostgresConnections are redacted; the tick fails showing them.
    with pg.connect(connection_id, connection_type, autocommit=True) as conn:
        prepare_session(conn)  # the probes' timeouts: a tick never waits on a busy catalog
        live = {w.schema: list_schema(conn, connection_id, w.schema) for w in watched}
    now = Changes.between(watched, live)
    new = now.minus(_reported(context.cursor))
    for line in new.log_lines():
        context.log.warning(line)
    return dg.SensorResult(
        skip_reason=_message(connection_id, live, now, new),
        asset_events=[_observation(d, p) for d in new.dropped.values() for p in d.pipelines],
        # Only what is still true: a table that is back leaves it, so a new drop reports again.
        cursor=now.cursor(),
    )


@dataclass(frozen=True)
class Changes:
    """By schema.name: tables a wildcard would take without an asset (added), tables with an
    asset gone from the source (dropped), and tables the cached listing has dropped that are
    back (returned: their runs fail until a refresh)."""

    added: dict[str, Added]
    dropped: dict[str, Dropped]
    returned: dict[str, Dropped]

    @classmethod
    def between(cls, watched: list[Watched], live: dict[str, SchemaListing]) -> "Changes":
        added: dict[str, Added] = {}
        dropped: dict[str, Dropped] = {}
        returned: dict[str, Dropped] = {}
        for schema in watched:
            listing = live[schema.schema]
            added.update((a.table, a) for a in _added(schema, listing))
            present = {table.name for table in listing.tables}
            for name, pipelines in sorted(schema.assets.items()):
                found = Dropped(schema.schema, name, tuple(pipelines))
                if name not in present:
                    dropped[found.table] = found
                elif all(p.expansion and p.expansion.dropped_at for p in pipelines):
                    returned[found.table] = found
        return cls(added, dropped, returned)

    def minus(self, reported: dict[str, set[str]]) -> "Changes":
        """The changes no earlier tick reported (`reported`: the cursor's names per kind)."""

        def unreported(section: str, found: dict[str, T]) -> dict[str, T]:
            seen = reported.get(section, set())
            return {name: change for name, change in found.items() if name not in seen}

        return Changes(
            unreported("added", self.added),
            unreported("dropped", self.dropped),
            unreported("returned", self.returned),
        )

    def cursor(self) -> str:
        return json.dumps(
            {
                "added": sorted(self.added),
                "dropped": sorted(self.dropped),
                "returned": sorted(self.returned),
            }
        )

    def log_lines(self) -> list[str]:
        """One line per kind of change, every table named (the tick's message is capped)."""
        lines = []
        if self.added:
            lines.append(f"new source tables without an asset: {', '.join(self.added)}")
        if self.dropped:
            lines.append(f"dropped at the source, assets kept: {', '.join(self.dropped)}")
        if self.returned:
            lines.append(f"back at the source, cached as dropped: {', '.join(self.returned)}")
        return lines


def _reported(cursor: str | None) -> dict[str, set[str]]:
    """What earlier ticks reported, by kind of change: table names."""
    try:
        seen = json.loads(cursor) if cursor else {}
    except ValueError:
        seen = {}
    if not isinstance(seen, dict):
        return {}
    return {k: set(v) for k, v in seen.items() if isinstance(v, list)}


def _added(watched: Watched, live: SchemaListing) -> list[Added]:
    """Live tables a wildcard would take that neither have an asset nor were in the listing
    the code location was built from (that one may have skipped them, e.g. keyless: skip)."""
    found = []
    for table in live.tables:
        if table.name in watched.assets or table.name in watched.cached:
            continue
        takers = tuple(
            w for w in watched.wildcards if matches(table, w.pattern, w.exclude, w.kinds)
        )
        if takers:
            found.append(Added(f"{watched.schema}.{table.name}", takers))
    return found


def _message(connection_id: str, live: dict[str, SchemaListing], now: Changes, new: Changes) -> str:
    lines = []
    if new.added:
        lines.append("New source tables that a schema-wide spec takes, without an asset yet:")
        lines.extend(_capped([a.line() for a in new.added.values()]))
        lines.append(f"To add them: {RELOAD}; each becomes an asset, loaded on its first run.")
    if new.dropped:
        lines.append("Dropped at the source, reported on their assets (warehouse copies kept):")
        lines.extend(_capped([f"{d.table} -> {d.assets()}" for d in new.dropped.values()]))
    if new.returned:
        lines.append(
            "Back at the source, but dropped in the cached listing: their runs fail until you "
            f"{RELOAD}:"
        )
        lines.extend(_capped([f"{d.table} -> {d.assets()}" for d in new.returned.values()]))
    waiting = sorted(now.added.keys() - new.added.keys())
    if waiting:
        lines.append(f"Reported before, still without an asset ({RELOAD}):")
        lines.extend(_capped(waiting))
    missing = sorted(schema for schema, listing in live.items() if not listing.exists)
    if missing:
        lines.append(f"Schemas missing on '{connection_id}': {', '.join(missing)}")
    if not lines:
        counts = ", ".join(f"{s} ({len(listing.tables)} tables)" for s, listing in live.items())
        lines.append(f"No table added or dropped on '{connection_id}': {counts}")
    return "\n".join(lines)


def _capped(items: list[str]) -> list[str]:
    """Indented lines, at most MESSAGE_TABLES of them: a schema of thousands stays readable."""
    shown = [f"  {item}" for item in items[:MESSAGE_TABLES]]
    if len(items) > MESSAGE_TABLES:
        shown.append(f"  ... and {len(items) - MESSAGE_TABLES} more (all in the tick's log)")
    return shown


def _observation(drop: Dropped, pipeline: PipelineSpec) -> dg.AssetObservation:
    copy = _warehouse_copy(pipeline)
    if pipeline.expansion is not None:
        retire = f"add {drop.name} to the exclude of {pipeline.file} to retire the asset"
    else:
        retire = f"remove its spec ({pipeline.file}) to retire the asset"
    return dg.AssetObservation(
        asset_key=asset_key(pipeline),
        description=(
            f"source table {drop.table} was dropped on '{pipeline.source.connection_id}'; the "
            f"warehouse copy {copy} is kept; {retire}"
        ),
        metadata={
            DROPPED_KEY: True,
            "pgflow/source_table": drop.table,
            "pgflow/warehouse_copy": copy,
        },
    )


def _warehouse_copy(pipeline: PipelineSpec) -> str:
    sink = pipeline.sink
    return str(sink.table) if sink.table else str(sink.path)

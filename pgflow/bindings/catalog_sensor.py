"""Catalog sensors: tables added to or dropped from a source schema that a schema-wide spec reads.

One sensor per source connection with schema-wide specs, `pgflow_catalog_<connection>`,
covering every schema they read: one short session per tick for the OLTP database, as the
staleness sensors. Each tick lists those schemas and compares them with what the code location
was built from (its assets, and the cached listing the wildcards were expanded against):

- a table a wildcard would take (glob, exclude, kinds) that has no asset yet is named in the
  tick's message with the fix: `pgflow specs refresh`, then reload the code location. The
  sensor does not reload it: Dagster gives a sensor no public way to reload its own code
  location (only the webserver's GraphQL API, whose address a code location does not know).
- a table dropped at the source that still has an asset gets an `AssetObservation`
  (`pgflow/source_dropped: true`); its warehouse copy is kept.

The cursor holds what was reported (added tables still without an asset, drops still gone), so
each change is reported once; a table that comes back and is dropped again is reported again.

No `from __future__ import annotations` here: Dagster inspects the sensor's resource params.
"""

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from pgflow.bindings.assets import asset_key
from pgflow.config.catalog_cache import read_cache
from pgflow.config.expand import matches
from pgflow.config.model import ConnectionType, PipelineSpec, Project, WildcardSpec
from pgflow.config.naming import dagster_name
from pgflow.config.wildcards import SchemaListing
from pgflow.connections.resource import PostgresConnections
from pgflow.sources.table_listing import list_schema

DROPPED_KEY = "pgflow/source_dropped"
FIX = (
    "run `pgflow specs refresh`, then reload the code location (Deployment -> Reload in the "
    "UI, or restart it): each becomes an asset, loaded on its first run"
)

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


def catalog_sensors(
    project: Project, listings: Listings | None = None
) -> list[dg.SensorDefinition]:
    """One sensor per source connection that a schema-wide spec reads. `listings`: the cached
    listings the project was expanded from; read from each spec's cache file when None."""
    if listings is None:
        listings = _cached_listings(project)
    by_connection: dict[str, list[WildcardSpec]] = defaultdict(list)
    for wildcard in project.wildcards:
        by_connection[wildcard.connection_id].append(wildcard)
    return [
        _sensor(project, connection_id, wildcards, listings)
        for connection_id, wildcards in sorted(by_connection.items())
    ]


def _cached_listings(project: Project) -> dict[tuple[str, str], SchemaListing]:
    found: dict[tuple[str, str], SchemaListing] = {}
    for spec_file in sorted({w.file for w in project.wildcards}):
        found.update(read_cache(spec_file))
    return found


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


def evaluate(
    context: dg.SensorEvaluationContext,
    connection_id: str,
    connection_type: ConnectionType,
    watched: list[Watched],
    pg: PostgresConnections,
) -> dg.SensorResult:
    # Connect errors from PostgresConnections are redacted; the tick fails showing them.
    with pg.connect(connection_id, connection_type, autocommit=True) as conn:
        live = {w.schema: list_schema(conn, connection_id, w.schema) for w in watched}
    added = {a.table: a for w in watched for a in _added(w, live[w.schema])}
    dropped = {d.table: d for w in watched for d in _dropped(w, live[w.schema])}
    reported_added, reported_dropped = _read_cursor(context.cursor)
    new_added = [added[t] for t in sorted(added.keys() - reported_added)]
    new_dropped = [dropped[t] for t in sorted(dropped.keys() - reported_dropped)]
    waiting = sorted(added.keys() & reported_added)
    for item in new_added:
        context.log.warning(f"new source table without an asset: {item.line()}")
    for drop in new_dropped:
        context.log.warning(f"source table {drop.table} was dropped; its assets are kept")
    message = _message(connection_id, live, new_added, new_dropped, waiting)
    return dg.SensorResult(
        skip_reason=message,
        asset_events=[_observation(d, p) for d in new_dropped for p in d.pipelines],
        # Only what is still true: a table that is back leaves it, so a new drop reports again.
        cursor=json.dumps({"added": sorted(added), "dropped": sorted(dropped)}),
    )


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


def _dropped(watched: Watched, live: SchemaListing) -> list[Dropped]:
    present = {table.name for table in live.tables}
    return [
        Dropped(watched.schema, name, tuple(pipelines))
        for name, pipelines in sorted(watched.assets.items())
        if name not in present
    ]


def _read_cursor(cursor: str | None) -> tuple[set[str], set[str]]:
    try:
        seen = json.loads(cursor) if cursor else {}
    except ValueError:
        seen = {}
    if not isinstance(seen, dict):
        seen = {}
    return set(seen.get("added") or ()), set(seen.get("dropped") or ())


def _message(
    connection_id: str,
    live: dict[str, SchemaListing],
    new_added: list[Added],
    new_dropped: list[Dropped],
    waiting: list[str],
) -> str:
    lines = []
    if new_added:
        lines.append("New source tables that a schema-wide spec takes, without an asset yet:")
        lines.extend(f"  {item.line()}" for item in new_added)
        lines.append(f"To add them: {FIX}.")
    if new_dropped:
        lines.append("Dropped at the source, reported on their assets (warehouse copies kept):")
        lines.extend(
            f"  {d.table} -> {', '.join(asset_key(p).to_user_string() for p in d.pipelines)}"
            for d in new_dropped
        )
    if waiting:
        lines.append(f"Reported before, still without an asset ({FIX}): {', '.join(waiting)}")
    missing = sorted(schema for schema, listing in live.items() if not listing.exists)
    if missing:
        lines.append(f"Schemas missing on '{connection_id}': {', '.join(missing)}")
    if not lines:
        counts = ", ".join(f"{s} ({len(listing.tables)} tables)" for s, listing in live.items())
        lines.append(f"No table added or dropped on '{connection_id}': {counts}")
    return "\n".join(lines)


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

"""Staleness sensors: request a run for exactly the pgflow assets whose source changed.

One sensor per source connection (one source connection per evaluation, so an OLTP database
sees one short session per tick), plus one for the pipelines reading Delta tables. Each tick
decides stale or fresh per pipeline from cheap probes (pgflow.sources.staleness) against the
position the target was loaded to: the sink's stored position, or the modification counter the
last materialization recorded; never from the sensor cursor (which only shows, per asset, the
evidence last requested), so after a failed run the asset is still stale.

Run keys are `<asset key>@<evidence>`, the evidence being the source state that made it stale:
`landing/orders@max=2026-01-01 00:00:00+00`, `landing/items@mods=1234>1200`,
`landing/payments@lsn=0/1A2B3C`, `landing/prices@v=7>6`. Dagster starts one run per run key and
sensor, so one piece of evidence requests one run; new writes make new evidence.

No `from __future__ import annotations` here: Dagster inspects the sensor's resource params.
"""

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import dagster as dg
import psycopg

from pgflow.bindings.assets import asset_key, latest_materialization, run_tags
from pgflow.config.model import PipelineSpec, Project, SensorSpec
from pgflow.config.naming import dagster_name
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.sinks.postgres import state
from pgflow.sources.base import Position
from pgflow.sources.pgoutput import lsn_to_int
from pgflow.sources.staleness import (
    SlotMember,
    Verdict,
    column_verdict,
    cursor_index,
    delta_version,
    prepare_session,
    slot_verdict,
    statistics_verdict,
    version_verdict,
)

DELTA_SENSOR = "pgflow_stale_delta_sources"
MODIFICATIONS_KEY = "pgflow/source_modifications"  # recorded by the IO managers
# Runs that will load (or may still be loading: CANCELING) their assets.
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class StalenessCheckFailed(RuntimeError):
    """No pipeline of the sensor could be checked; the message lists each one's error."""


def sensor_name(connection_id: str) -> str:
    return f"pgflow_stale_{dagster_name(connection_id)}"


def staleness_sensors(project: Project) -> list[dg.SensorDefinition]:
    sensors = []
    for connection_id in project.source_connection_ids():
        # A table found dropped at the source has nothing to probe: the catalog sensor
        # reports it on its asset.
        pipelines = [
            p
            for p in project.pipelines
            if p.source.connection_id == connection_id
            and not (p.expansion and p.expansion.dropped_at)
        ]
        description = (
            f"Requests a run of each pgflow asset reading connection '{connection_id}' whose "
            "source changed since its last load (cursor column max, table statistics or CDC "
            f"slot): {_asset_list(pipelines)}."
        )
        settings = project.sensor_settings(connection_id)
        sensors.append(_sensor(sensor_name(connection_id), description, pipelines, settings))
    delta = [p for p in project.pipelines if p.source.type == "delta"]
    if delta:
        description = (
            "Requests a run of each pgflow asset syncing a Delta table whose version is newer "
            f"than the version synced: {_asset_list(delta)}."
        )
        sensors.append(_sensor(DELTA_SENSOR, description, delta, SensorSpec()))
    return sensors


def _sensor(
    name: str, description: str, pipelines: list[PipelineSpec], settings: SensorSpec
) -> dg.SensorDefinition:
    status = dg.DefaultSensorStatus.RUNNING if settings.running else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name=name,
        description=description,
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=status,
        target=_requestable(pipelines),
    )
    def _staleness(
        context: dg.SensorEvaluationContext, pg: PostgresConnections, delta: DeltaStorage
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate(context, pipelines, pg, delta)

    return _staleness


def _requestable(pipelines: list[PipelineSpec]) -> dg.AssetSelection | None:
    """The assets the sensor may request: time-partitioned ones need a partition key (their
    schedule or a backfill runs them), and one job cannot mix them with unpartitioned ones."""
    keys = [asset_key(p) for p in pipelines if p.partitions is None]
    return dg.AssetSelection.assets(*keys) if keys else None


class _Sessions:
    """One autocommit connection per connection id for the whole tick, opened on first use.

    A connection that failed to open fails every later use with the same (redacted) error
    rather than being retried once per pipeline.
    """

    def __init__(self, pg: PostgresConnections, stack: ExitStack):
        self._pg = pg
        self._stack = stack
        self._open: dict[tuple[str, str], psycopg.Connection | Exception] = {}

    def get(self, connection_id: str, connection_type: str) -> psycopg.Connection:
        key = (connection_id, connection_type)
        if key not in self._open:
            try:
                conn = self._pg.open(connection_id, connection_type, autocommit=True)
                self._stack.enter_context(conn)
                prepare_session(conn)
                self._open[key] = conn
            except Exception as exc:
                self._open[key] = exc
        opened = self._open[key]
        if isinstance(opened, Exception):
            raise opened
        return opened


@contextmanager
def _sessions(pg: PostgresConnections) -> Iterator[_Sessions]:
    with ExitStack() as stack:
        yield _Sessions(pg, stack)


@dataclass(frozen=True)
class Outcome:
    pipeline: PipelineSpec
    verdict: Verdict | None = None
    note: str = ""  # why there is no verdict: a run in progress, or the error
    failed: bool = False

    @property
    def asset(self) -> str:
        return asset_key(self.pipeline).to_user_string()

    @property
    def stale(self) -> bool:
        return self.verdict is not None and self.verdict.stale

    def line(self) -> str:
        return f"{self.asset}: {self.verdict.reason if self.verdict else self.note}"


def evaluate(
    context: dg.SensorEvaluationContext,
    pipelines: list[PipelineSpec],
    pg: PostgresConnections,
    delta: DeltaStorage,
) -> dg.SensorResult | dg.SkipReason:
    busy_keys, busy_names = _runs_in_progress(context.instance)
    with _sessions(pg) as sessions:
        outcomes = []
        for pipeline in pipelines:
            if asset_key(pipeline) in busy_keys or pipeline.name in busy_names:
                # Not even probed: peeking a CDC slot now could disturb the run.
                outcomes.append(Outcome(pipeline, note="a run for it is in progress"))
            else:
                outcomes.append(_outcome(context, pipeline, sessions, delta))
    for outcome in outcomes:
        if outcome.failed:
            context.log.warning(f"skipped after an error: {outcome.line()}")
        else:
            context.log.info(f"{'stale' if outcome.stale else 'not stale'}: {outcome.line()}")
    if outcomes and all(o.failed for o in outcomes):
        raise StalenessCheckFailed(
            "no pipeline could be checked:\n" + "\n".join(o.line() for o in outcomes)
        )
    stale = [o for o in outcomes if o.stale]
    if not stale:
        return dg.SkipReason("nothing stale:\n" + "\n".join(o.line() for o in outcomes))
    return dg.SensorResult(
        run_requests=[_run_request(o) for o in stale],
        cursor=_cursor(context.cursor, stale, pipelines),
    )


def _outcome(
    context: dg.SensorEvaluationContext,
    pipeline: PipelineSpec,
    sessions: _Sessions,
    delta: DeltaStorage,
) -> Outcome:
    """One pipeline's verdict; any error is this pipeline's only (logged, others go on)."""
    if pipeline.partitions is not None:
        return Outcome(
            pipeline,
            note="time-partitioned: loaded per partition by schedules and backfills, not here",
        )
    if pipeline.source.query is not None:
        note = "reads source.query: no table statistics to compare; schedule it instead"
        return Outcome(pipeline, note=note)
    try:
        return Outcome(pipeline, _verdict(context.instance, pipeline, sessions, delta))
    except Exception as exc:  # one pipeline's failure must not hide the others' staleness
        # Connect errors from PostgresConnections are redacted; query errors hold no secret.
        return Outcome(pipeline, note=f"not checked: {type(exc).__name__}: {exc}", failed=True)


def _verdict(
    instance: dg.DagsterInstance,
    pipeline: PipelineSpec,
    sessions: _Sessions,
    delta: DeltaStorage,
) -> Verdict:
    source = pipeline.source
    if source.type == "delta":
        return _delta_source_verdict(pipeline, sessions, delta)
    assert source.connection_id and source.table
    conn = sessions.get(source.connection_id, source.connection_type)
    options = source.options
    if options.incremental_strategy == "cdc":
        assert options.slot_name and options.publication_name  # defaulted by the loader
        return slot_verdict(
            conn,
            options.slot_name,
            options.publication_name,
            loaded=lambda: _stored_position(pipeline, sessions, delta) is not None,
            member=SlotMember(source.table, lambda: _stored_lsn(pipeline, sessions, delta)),
        )
    if options.incremental_strategy != "column":
        return _statistics_verdict(instance, pipeline, conn)
    column = options.incremental_column
    assert column
    if cursor_index(conn, source.table, column) is not None:
        stored = _stored_position(pipeline, sessions, delta)
        return column_verdict(conn, source.table, column, stored)
    # max() would scan the table: the statistics answer instead.
    verdict = _statistics_verdict(instance, pipeline, conn)
    return replace(
        verdict, reason=f"no index led by {column}, statistics instead: {verdict.reason}"
    )


def _statistics_verdict(
    instance: dg.DagsterInstance, pipeline: PipelineSpec, conn: psycopg.Connection
) -> Verdict:
    """The source's modification counter against the one the last materialization recorded."""
    assert pipeline.source.table
    event = latest_materialization(instance, pipeline)
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return statistics_verdict(conn, pipeline.source.table, None)
    value = materialization.metadata.get(MODIFICATIONS_KEY)
    recorded = value.value if value is not None else None
    if not isinstance(recorded, int):
        unrecorded = f"the last materialization recorded no {MODIFICATIONS_KEY}"
        return statistics_verdict(conn, pipeline.source.table, None, unrecorded)
    return statistics_verdict(conn, pipeline.source.table, recorded)


def _delta_source_verdict(
    pipeline: PipelineSpec, sessions: _Sessions, delta: DeltaStorage
) -> Verdict:
    source, sink = pipeline.source, pipeline.sink
    assert source.path and sink.connection_id and sink.table
    current = delta_version(source.path, delta.storage_options())
    stored = state.read_position(sessions.get(sink.connection_id, sink.connection_type), sink.table)
    from pgflow.flows.delta_sync.position import SyncState

    synced = SyncState.from_position(stored, current.table_uri)
    return version_verdict(current, synced.synced if synced else None)


def _stored_position(
    pipeline: PipelineSpec, sessions: _Sessions, delta: DeltaStorage
) -> Position | None:
    """The position the target was loaded to: in `_pgflow.pipeline_state`, or the Delta commit."""
    sink = pipeline.sink
    if sink.type == "delta" and pipeline.source.options.incremental_strategy == "cdc":
        return _delta_cdc_position(pipeline, delta)
    if sink.type == "delta":
        assert sink.path
        from pgflow.sinks.delta.state import stored_position  # imports deltalake: on use only

        return stored_position(sink.path, pipeline.name, delta.storage_options())
    assert sink.connection_id and sink.table
    return state.read_position(sessions.get(sink.connection_id, sink.connection_type), sink.table)


def _delta_cdc_position(pipeline: PipelineSpec, delta: DeltaStorage) -> Position | None:
    """CDC into Delta: the LSN the table's last CDC commit carries (its app transaction), not
    the snapshot load's position."""
    from pgflow.flows.cdc.model import position_source  # imports deltalake: on use only
    from pgflow.sinks.delta.cdc_state import stored_cdc_position
    from pgflow.sinks.delta.table import open_table

    source, path = pipeline.source, pipeline.sink.path
    assert source.table and source.options.slot_name and path  # defaulted by the loader
    identity = position_source(source.table, source.options.slot_name)
    table = open_table(path, delta.storage_options())
    return stored_cdc_position(table, pipeline.name, identity)


def _stored_lsn(pipeline: PipelineSpec, sessions: _Sessions, delta: DeltaStorage) -> int | None:
    """The LSN a CDC target holds: its table's own place in a slot other tables share."""
    stored = _stored_position(pipeline, sessions, delta)
    return lsn_to_int(stored.value) if stored and stored.kind == "cdc" else None


def _runs_in_progress(instance: dg.DagsterInstance) -> tuple[set[dg.AssetKey], set[str]]:
    """Assets (and pgflow pipelines, by run tag) that a queued or running run will load."""
    keys: set[dg.AssetKey] = set()
    names: set[str] = set()
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)):
        keys.update(run.asset_selection or ())
        name = run.tags.get("pgflow/pipeline")
        if name:
            names.add(name)
    return keys, names


def _run_request(outcome: Outcome) -> dg.RunRequest:
    assert outcome.verdict is not None
    return dg.RunRequest(
        run_key=f"{outcome.asset}@{outcome.verdict.evidence}",
        asset_selection=[asset_key(outcome.pipeline)],
        tags=run_tags(outcome.pipeline),
    )


def _cursor(previous: str | None, stale: list[Outcome], pipelines: list[PipelineSpec]) -> str:
    """Per asset, the evidence last requested: shown in the UI, never used to decide."""
    try:
        seen = json.loads(previous) if previous else {}
    except ValueError:
        seen = {}
    if not isinstance(seen, dict):
        seen = {}
    assets = {asset_key(p).to_user_string() for p in pipelines}
    seen = {k: v for k, v in seen.items() if k in assets}
    seen.update({o.asset: o.verdict.evidence for o in stale if o.verdict})
    return json.dumps(seen, sort_keys=True)


def _asset_list(pipelines: list[PipelineSpec]) -> str:
    return ", ".join(asset_key(p).to_user_string() for p in pipelines)

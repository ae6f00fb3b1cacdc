"""`pgflow report`'s metrics: each pipeline's last materialization and a later failed run.

Read from the Dagster instance of $DAGSTER_HOME (the one the runs record into), through its
public API: every pipeline's asset record in one query, with the asset's latest
materialization (the sink metrics its metadata carries) and its latest run (`last_run_id`:
set when a run plans it);
when that run failed or was canceled after the materialization, the error of the asset's
step in it. Without $DAGSTER_HOME, or when the instance does not open, one line says so and
the report goes on: the targets' own figures never need Dagster.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgflow.bindings.error_text import error_text, one_line
from pgflow.config.model import PipelineSpec

if TYPE_CHECKING:
    import dagster as dg

HINT = (
    "metrics: the runs' metrics live in the Dagster instance; set DAGSTER_HOME to the folder "
    "of the dagster.yaml the runs use (with its storage variables, e.g. DAGSTER_PG_*) to see them"
)
ERROR_CHARS = 300
INDENT = " " * 4
# Shown in this order when the materialization has them (CDC and Delta loads have fewer).
_FIGURES: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("pgflow/rows_written", lambda n: f"{n:,} rows written"),
    ("pgflow/batches", lambda n: f"{n:,} batch" + ("" if n == 1 else "es")),
    ("pgflow/avg_batch_rows", lambda n: f"{n:,.1f} avg batch rows"),
    ("pgflow/write_seconds", lambda s: f"{s:.3f} s writing"),
    ("pgflow/retries", lambda n: f"{n} retr" + ("y" if n == 1 else "ies")),
)


def open_instance(environ: Mapping[str, str] | None = None) -> dg.DagsterInstance | str:
    """The instance of $DAGSTER_HOME, or the line to print instead (never raises)."""
    environ = os.environ if environ is None else environ
    if not environ.get("DAGSTER_HOME"):
        return HINT
    import dagster as dg  # only when an instance is used

    try:
        return dg.DagsterInstance.get()
    except Exception as exc:  # a missing folder, storage variables unset, a database down
        detail = one_line(f"{type(exc).__name__}: {exc}", ERROR_CHARS)
        return f"metrics: the Dagster instance of $DAGSTER_HOME did not open ({detail})"


@dataclass(frozen=True)
class LastRuns:
    """Per asset, its latest materialization and the id of its latest run (read for every
    pipeline in one query: a report of hundreds of tables stays quick)."""

    instance: dg.DagsterInstance
    latest: Mapping[dg.AssetKey, tuple[dg.EventLogEntry | None, str | None]]


def last_runs(instance: dg.DagsterInstance, pipelines: Sequence[PipelineSpec]) -> LastRuns | str:
    """What the instance holds of the pipelines' assets, or the line to print instead."""
    import dagster as dg

    try:
        records = instance.get_asset_records([dg.AssetKey(list(p.asset_key)) for p in pipelines])
    except Exception as exc:  # storage unreachable: the targets' figures are still printed
        return f"metrics: unavailable ({one_line(f'{type(exc).__name__}: {exc}', ERROR_CHARS)})"
    latest = {
        r.asset_entry.asset_key: (r.asset_entry.last_materialization, r.asset_entry.last_run_id)
        for r in records
    }
    return LastRuns(instance, latest)


def describe_metrics(runs: LastRuns, pipeline: PipelineSpec) -> list[str]:
    """The pipeline's last materialization, and the error of a failed run after it."""
    import dagster as dg

    key = dg.AssetKey(list(pipeline.asset_key))
    event, last_run = runs.latest.get(key, (None, None))
    lines = [materialization_line(event) if event else "last run: none recorded"]
    if last_run is not None and (event is None or event.run_id != last_run):
        try:
            failure = failure_line(runs.instance, last_run, key)
        except Exception as exc:  # the report goes on without this pipeline's failure
            failure = f"last run {last_run}: unavailable ({one_line(str(exc), ERROR_CHARS)})"
        lines += [failure] if failure else []
    return [INDENT + line for line in lines]


def materialization_line(event: dg.EventLogEntry) -> str:
    materialization = event.asset_materialization
    metadata = materialization.metadata if materialization else {}
    figures = [show(metadata[name].value) for name, show in _FIGURES if name in metadata]
    partition = materialization.partition if materialization else None
    where = f"run {event.run_id}" + (f", partition {partition}" if partition else "")
    return f"last run {_when(event.timestamp)} ({where}): " + (", ".join(figures) or "no metrics")


def failure_line(instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey) -> str | None:
    """`last failure ...` when the run `run_id` failed or was canceled; else None."""
    import dagster as dg

    record = instance.get_run_record_by_id(run_id)
    ended = {dg.DagsterRunStatus.FAILURE: "failure", dg.DagsterRunStatus.CANCELED: "canceled run"}
    if record is None or record.dagster_run.status not in ended:
        return None
    label = ended[record.dagster_run.status]
    when = record.end_time or record.create_timestamp.timestamp()
    return f"last {label} {_when(when)} (run {run_id}): {run_error(instance, run_id, key)}"


def run_error(instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey) -> str:
    """The error of the asset's step in the run, else the run's own failure message."""
    import dagster as dg

    kinds = {
        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.RUN_FAILURE,
        dg.DagsterEventType.RUN_CANCELED,
    }
    records = instance.get_records_for_run(run_id, of_type=kinds).records
    events = [e for e in (r.event_log_entry.dagster_event for r in records) if e is not None]
    steps = {
        e.step_key for e in events if e.is_asset_materialization_planned and e.asset_key == key
    }
    for event in reversed(events):
        if event.is_step_failure and event.step_key in steps:
            error = event.step_failure_data.error
            if error is not None:
                return error_text(error, ERROR_CHARS)
    canceled = dg.DagsterEventType.RUN_CANCELED
    ends = [e.message or "" for e in events if e.is_run_failure or e.event_type == canceled]
    return one_line(ends[-1] if ends else "no error recorded", ERROR_CHARS)


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

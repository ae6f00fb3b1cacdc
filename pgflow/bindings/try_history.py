"""The earlier tries of a step in its run: `pgflow/retries` and `pgflow/last_error`.

Dagster's RetryPolicy starts a step again after a transient error (bindings/retries.py); each
try that failed left a STEP_UP_FOR_RETRY event (or STEP_FAILURE) with its error in the run's
event log. The asset body, which has the run's context, reads them (only on a retry: a first
try costs nothing) and hands them to the IO manager with its output, which adds them to the
materialization's metadata for every sink (io_managers._report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from pgflow.bindings.error_text import error_text

_STEP_ERRORS = {dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_FAILURE}


@dataclass(frozen=True)
class TryHistory:
    """`retries`: earlier tries of this step in this run that failed (Dagster's
    retry_number); `last_error`: the error of the try before this one, cut and redacted."""

    retries: int = 0
    last_error: str | None = None


FIRST_TRY = TryHistory()


def try_history(context: dg.AssetExecutionContext) -> TryHistory:
    retries = context.retry_number
    if retries == 0:
        return FIRST_TRY
    # An asset job's step key is its op's name (pgflow's assets are never nested in graphs).
    error = last_step_error(context.instance, context.run.run_id, context.op_def.name)
    return TryHistory(retries, error)


def last_step_error(instance: dg.DagsterInstance, run_id: str, step_key: str) -> str | None:
    """The error of the step's latest failed try in the run, as Dagster recorded it."""
    records = instance.get_records_for_run(run_id, of_type=_STEP_ERRORS).records
    for record in reversed(records):
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key != step_key:
            continue
        data = event.step_retry_data if event.is_step_up_for_retry else event.step_failure_data
        if data.error is not None:
            return error_text(data.error)
    return None


def try_metadata(tries: TryHistory) -> dict[str, Any]:
    metadata: dict[str, Any] = {"pgflow/retries": dg.MetadataValue.int(tries.retries)}
    if tries.retries and tries.last_error:
        metadata["pgflow/last_error"] = dg.MetadataValue.text(tries.last_error)
    return metadata

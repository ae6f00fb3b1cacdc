"""The earlier tries of a step in its run: `pgflow/retries` and `pgflow/last_error`.

Dagster's RetryPolicy starts a step again after a transient error (bindings/retries.py); each
try that failed left a STEP_UP_FOR_RETRY event (or STEP_FAILURE) with its error in the run's
event log. The asset body, which has the run's context, reads them (only on a retry: a first
try costs nothing) and hands them to the IO manager with its output, which adds them to the
materialization's metadata for every sink (io_managers._report).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg

from pgflow.connections.secrets import redact

# The seeds' `last_error` is a short text: the class and the first ~500 characters.
ERROR_CHARS = 500
_KEY_VALUE_PASSWORD = re.compile(r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)
_QUALIFIED_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*): ")
_WRAPPERS = ("RetryRequested", "DagsterExecution", "DagsterUserCodeExecutionError")
_STEP_ERRORS = {dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_FAILURE}


class ErrorInfo(Protocol):
    """What Dagster records of an error (its SerializableErrorInfo)."""

    @property
    def message(self) -> str: ...
    @property
    def cls_name(self) -> str | None: ...
    @property
    def cause(self) -> ErrorInfo | None: ...


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


def error_text(error: ErrorInfo, limit: int = ERROR_CHARS) -> str:
    """`Class: message`, on one line, without a password, at most `limit` characters."""
    # Dagster wraps the step's own error (a retry request, a step or IO manager error): skip.
    while error.cause is not None and (error.cls_name or "").startswith(_WRAPPERS):
        error = error.cause
    message = _QUALIFIED_PREFIX.sub("", error.message.strip())
    name = error.cls_name or ""
    text = message if not name or message.startswith(f"{name}:") else f"{name}: {message}"
    return one_line(text, limit)


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """`text` on one line, without a password, at most `limit` characters."""
    return cut(without_passwords(" ".join(text.split())), limit)


def without_passwords(text: str) -> str:
    """`text` without a connection URI's password or a key=value conninfo's password."""
    return _KEY_VALUE_PASSWORD.sub(r"\1***", redact(text, []))


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def try_metadata(tries: TryHistory) -> dict[str, Any]:
    metadata: dict[str, Any] = {"pgflow/retries": dg.MetadataValue.int(tries.retries)}
    if tries.retries and tries.last_error:
        metadata["pgflow/last_error"] = dg.MetadataValue.text(tries.last_error)
    return metadata

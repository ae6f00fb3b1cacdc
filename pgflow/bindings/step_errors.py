"""How a failed load ends the Dagster step: retried, explained, or with its traceback.

Transient errors (a lost connection, a serialization failure) go back to the RetryPolicy;
errors that name their own cause and fix are shown as they are; anything unexpected keeps its
traceback. Every message names the pipeline and its spec file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from pgflow.config.model import PipelineSpec
from pgflow.connections.errors import is_transient
from pgflow.connections.secrets import ConnectionConfigError
from pgflow.flows.cdc.model import CdcApplyError
from pgflow.sinks.postgres.create_partitions import CreatePartitionsRefused, PartitionsMissing
from pgflow.sinks.postgres.partition_ranges import IntervalUnknown
from pgflow.sinks.postgres.partition_replace import (
    NativePartitionRefused,
    PartitionMissing,
    PartitionSliceError,
)
from pgflow.sources.base import SourceConfigError
from pgflow.sources.catalog import TableNotFound
from pgflow.sources.cdc import ReplicationError
from pgflow.sources.column_cursor import NullCursorRows


class SourceTableDropped(Exception):
    """The last refresh found the source table of an expanded pipeline gone; its asset stays."""


# Errors that name their own cause and fix: shown as they are, without a traceback.
_EXPLAINED_ERRORS: tuple[type[Exception], ...] = (
    SourceTableDropped,
    NullCursorRows,
    ReplicationError,
    CdcApplyError,
    ConnectionConfigError,
    PartitionSliceError,
    NativePartitionRefused,
    PartitionMissing,
    PartitionsMissing,
    CreatePartitionsRefused,
    IntervalUnknown,
)


def _explained(exc: Exception) -> bool:
    if isinstance(exc, _EXPLAINED_ERRORS):
        return True
    from pgflow.flows.delta_sync.errors import DeltaSyncError

    return isinstance(exc, DeltaSyncError)


@contextmanager
def step_errors(spec: PipelineSpec) -> Iterator[None]:
    """Let transient errors through to the RetryPolicy; make every other one a final Failure."""
    try:
        yield
    except Exception as exc:
        where = f"pipeline '{spec.name}' ({spec.file})"
        if is_transient(exc):
            # Retried by the RetryPolicy; the last attempt's failure names the spec too.
            raise dg.Failure(f"{where}: {_plain(exc)}", allow_retries=True) from exc
        if isinstance(exc, TableNotFound):
            description = (
                f"{where}: source table {spec.source.table} not found on connection "
                f"'{spec.source.connection_id}'; check source.table"
            )
        elif isinstance(exc, SourceConfigError):
            description = f"{where}: field '{exc.field}': {exc.detail}"
        elif _explained(exc):
            description = f"{where}: {exc}"
        else:
            # Unexpected: keep the traceback (raised from exc) for whoever debugs it.
            raise dg.Failure(f"{where}: {type(exc).__name__}: {exc}", allow_retries=False) from exc
        raise dg.Failure(description, allow_retries=False) from None


def refuse_dropped_source(spec: PipelineSpec) -> None:
    """Stop the run of a table the last refresh found dropped at the source, before the load
    touches its target: the asset (and its warehouse copy) stays until the spec retires it."""
    expansion, table, sink = spec.expansion, spec.source.table, spec.sink
    if expansion is None or expansion.dropped_at is None or table is None:
        return
    raise SourceTableDropped(
        f"source table {table} was dropped (found at {expansion.dropped_at}); the warehouse "
        f"copy {sink.table or sink.path} is kept; add {table.name} to the spec's exclude to "
        "retire the asset"
    )


def _plain(exc: Exception) -> str:
    return str(exc) if _explained(exc) else f"{type(exc).__name__}: {exc}"

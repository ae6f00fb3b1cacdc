"""The `row_count_parity` check: target rows vs source rows; exact when the last load made the
target one consistent snapshot of the source (ERROR), within `checks.row_count_tolerance` of
the source's live count otherwise (WARN).

The target's rows: right after a whole load in the same run, the ledger that load kept in
pgflow's state (no scan); otherwise (the scan job, on demand) an exact count, compared with the
ledger: a difference means someone else changed the target (ERROR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg

from pgflow.bindings.checks.comparison import (
    LastLoad,
    both_sides,
    counts_comparable,
    last_load,
    source_not_found,
)
from pgflow.bindings.checks.context import (
    COUNT_TIMEOUT_SECONDS,
    ERROR,
    WARN,
    CheckRun,
    result,
    target_name,
)
from pgflow.bindings.checks.names import ROW_COUNT_PARITY
from pgflow.bindings.checks.target import Audit, DeltaReads, target_table
from pgflow.config.model import PipelineSpec
from pgflow.sinks.postgres import inspect as pg_inspect
from pgflow.sources.base import SourceConfigError
from pgflow.sources.catalog import TableNotFound
from pgflow.sources.query import count_query_rows


@dataclass(frozen=True)
class Counts:
    target: int
    source: int
    exact: bool
    tolerance: float

    @property
    def difference(self) -> int:
        return self.target - self.source

    @property
    def allowed(self) -> float:
        return 0.0 if self.exact else self.tolerance * self.source

    @property
    def passed(self) -> bool:
        return abs(self.difference) <= self.allowed


@dataclass(frozen=True)
class TargetRows:
    live: int  # not counting soft-deleted rows
    source: Literal["ledger", "count"]
    audit: Audit | None  # the count, with the ledger it was compared with

    @property
    def tampered(self) -> bool:
        """Counted rows the ledger does not account for: written or deleted by someone else."""
        audit = self.audit
        return audit is not None and audit.ledger is not None and audit.rows != audit.ledger


def offered(pipeline: PipelineSpec) -> bool:
    return counts_comparable(pipeline)


def describe(pipeline: PipelineSpec) -> str:
    return (
        "The target's row count matches the source's: exactly (ERROR) when the last load made "
        "the target one consistent snapshot of the source, else within "
        f"{pipeline.checks.row_count_tolerance:.2%} of the source's live count (WARN)"
        + (" not counting soft-deleted rows" if pipeline.source.options.deleted_column else "")
        + "."
    )


def check(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    loaded = last_load(pipeline, run, instance, ROW_COUNT_PARITY)
    if isinstance(loaded, dg.AssetCheckResult):
        return loaded
    return _compared(pipeline, run, loaded)


def _compared(pipeline: PipelineSpec, run: CheckRun, loaded: LastLoad) -> dg.AssetCheckResult:
    """The check's result against `loaded`, the last load, whose target exists."""
    exact_rows = loaded.exact_rows
    if exact_rows is not None:
        found = _target_rows(pipeline, run)
        counts = Counts(found.live, exact_rows, exact=True, tolerance=0.0)
    else:
        try:
            source_rows, found = both_sides(
                run,
                lambda: _source_rows(pipeline, run),
                lambda: _target_rows(pipeline, run),
                "pgflow-source-count",
            )
        except TableNotFound:
            return source_not_found(pipeline, ROW_COUNT_PARITY)
        except SourceConfigError as exc:  # Postgres refused the source query
            text = f"the source cannot be counted: {exc}"
            return result(pipeline, ROW_COUNT_PARITY, False, ERROR, text)
        counts = Counts(found.live, source_rows, False, pipeline.checks.row_count_tolerance)
    metadata = _counts_metadata(pipeline, counts, found)
    if found.tampered:
        return result(
            pipeline, ROW_COUNT_PARITY, False, ERROR, _tampered_text(pipeline, found), metadata
        )
    text = _counts_text(pipeline, counts)
    severity = ERROR if counts.exact else WARN
    return result(pipeline, ROW_COUNT_PARITY, counts.passed, severity, text, metadata)


def _target_rows(pipeline: PipelineSpec, run: CheckRun) -> TargetRows:
    target = target_table(run)
    if run.load == "whole" and not pipeline.source.options.deleted_column:
        # This run's load wrote the ledger with the rows: counting them again is the scan the
        # ledger saves. Other runs count, and so verify the ledger.
        ledger = target.ledger_rows()
        if ledger is not None:
            return TargetRows(ledger, "ledger", None)
    audit = target.audit()
    return TargetRows(audit.live, "count", audit)


def _source_rows(pipeline: PipelineSpec, run: CheckRun) -> int:
    source = pipeline.source
    if source.type == "delta":
        assert source.path
        table = DeltaReads(source.path, run)
        if not table.exists():
            raise TableNotFound(source.path)
        return table.row_count()
    conn = run.source()
    if source.query is not None:  # its rows as a load reads them, read only
        return count_query_rows(conn, source.query, COUNT_TIMEOUT_SECONDS)
    assert source.table
    if not pg_inspect.exists(conn, source.table):
        raise TableNotFound(str(source.table))
    return pg_inspect.row_count(conn, source.table, timeout=COUNT_TIMEOUT_SECONDS)


def _counts_text(pipeline: PipelineSpec, counts: Counts) -> str:
    soft = " (soft-deleted rows not counted)" if pipeline.source.options.deleted_column else ""
    figures = f"{target_name(pipeline)} has {counts.target:,} rows{soft}"
    if counts.exact:
        against = f"the source snapshot of the last load had {counts.source:,}"
        if counts.passed:
            return f"{figures}; {against}: equal, as a consistent snapshot load must be"
        return (
            f"{figures}, but {against}: the target changed since that load (or the load lost "
            "rows); materialize the asset again to rebuild it"
        )
    against = (
        f"the source has {counts.source:,} now (difference {counts.difference:+,}, "
        f"tolerance {counts.tolerance:.2%} = {counts.allowed:,.1f} rows)"
    )
    if counts.passed:
        return f"{figures}; {against}: within tolerance"
    return (
        f"{figures}; {against}: outside tolerance. Changes since the last load, rows deleted "
        "at the source (incremental loads keep them), or rows changed in the target; a load "
        "with run config reset: true makes the target exactly the source"
    )


def _tampered_text(pipeline: PipelineSpec, found: TargetRows) -> str:
    assert found.audit is not None and found.audit.rows is not None
    rows, ledger = found.audit.rows, found.audit.ledger or 0
    return (
        f"{target_name(pipeline)} has {rows:,} rows, but pgflow's state counts {ledger:,} after the last "
        f"load ({rows - ledger:+,}): rows were written to or deleted from the target outside "
        "pgflow. Fix: materialize the asset with run config reset: true, which rebuilds the "
        "target from the source and counts it anew"
    )


def _counts_metadata(pipeline: PipelineSpec, counts: Counts, found: TargetRows) -> dict[str, Any]:
    ledger = found.audit.ledger if found.audit else None
    return {
        "target_rows_from": dg.MetadataValue.text(found.source),
        "ledger_rows": dg.MetadataValue.int(ledger) if ledger is not None else None,
        "target_rows": dg.MetadataValue.int(counts.target),
        "source_rows": dg.MetadataValue.int(counts.source),
        "difference": dg.MetadataValue.int(counts.difference),
        "tolerance": dg.MetadataValue.float(0.0 if counts.exact else counts.tolerance),
        "mode": dg.MetadataValue.text("exact" if counts.exact else "tolerance"),
        "soft_delete_column": dg.MetadataValue.text(pipeline.source.options.deleted_column)
        if pipeline.source.options.deleted_column
        else None,
    }


def after_snapshot_load(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult | None:
    """Right after a load that made the target one snapshot of the source: the rows its ledger
    holds against the snapshot's, no scan of either side. None where only a count could tell."""
    if run.load != "whole" or pipeline.source.options.deleted_column:
        return None
    loaded = last_load(pipeline, run, instance, ROW_COUNT_PARITY)
    if isinstance(loaded, dg.AssetCheckResult):
        return loaded
    if loaded.exact_rows is None or target_table(run).ledger_rows() is None:
        return None
    return _compared(pipeline, run, loaded)  # takes the ledger in exactly this case

"""The target table as the checks read it, a Postgres table or a Delta table alike: the one
place that knows which reads each sink type needs; and the result when there is no target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import dagster as dg
from psycopg import sql

from pgflow.bindings.assets import latest_materialization
from pgflow.bindings.checks import context
from pgflow.bindings.checks.context import result, target_name
from pgflow.config.model import KEYED_CHANGE_MODES, PipelineSpec
from pgflow.sinks.postgres import inspect as pg_inspect
from pgflow.sinks.postgres.inspect import DuplicateKeys, SchemaComparison
from pgflow.sinks.postgres.state import read_target_rows
from pgflow.sources.catalog import TableInfo, describe_table
from pgflow.sources.postgres import set_timeout


@dataclass(frozen=True)
class Audit:
    """The target counted, and the rows pgflow's state says it holds, in one snapshot."""

    live: int  # not counting soft-deleted rows
    rows: int | None = None  # every row; None where there is no ledger to compare with
    ledger: int | None = None


class TargetTable(Protocol):
    def exists(self) -> bool: ...

    def column_names(self) -> tuple[str, ...]: ...

    def row_count(self) -> int:
        """Rows of the target, not counting soft-deleted ones."""
        ...

    def ledger_rows(self) -> int | None:
        """Every row of the target (soft-deleted ones too) as pgflow's state counts them with
        each load, no scan; None where unknown (then only a count can tell)."""
        ...

    def audit(self) -> Audit:
        """A count of the target next to the ledger's rows, read in one snapshot."""
        ...

    def enforcing_index(self, key: Sequence[str]) -> str | None:
        """A unique index that makes `key` unique, or None: then only a scan can tell."""
        ...

    def duplicate_keys(self, key: Sequence[str]) -> DuplicateKeys: ...

    def compare(self, source: TableInfo) -> SchemaComparison:
        """The drift the next load will find between `source` and this table."""
        ...


def target_table(run: context.CheckRun) -> TargetTable:
    sink = run.pipeline.sink
    if sink.type == "delta":
        assert sink.path
        return DeltaReads(sink.path, run)
    return PostgresTarget(run)


class PostgresTarget:
    def __init__(self, run: context.CheckRun):
        assert run.pipeline.sink.table
        self._run, self._table = run, run.pipeline.sink.table

    def exists(self) -> bool:
        return pg_inspect.exists(self._run.target(), self._table)

    def column_names(self) -> tuple[str, ...]:
        return self._describe().column_names

    def row_count(self) -> int:
        deleted = self._run.pipeline.source.options.deleted_column
        return pg_inspect.row_count(
            self._run.target(), self._table, deleted, context.COUNT_TIMEOUT_SECONDS
        )

    def ledger_rows(self) -> int | None:
        return read_target_rows(self._run.target(), self._table)

    def audit(self) -> Audit:
        deleted = self._run.pipeline.source.options.deleted_column
        live: sql.Composable = sql.SQL("count(*)")
        if deleted and deleted in self.column_names():
            live = sql.SQL("count(*) FILTER (WHERE {} IS NULL)").format(sql.Identifier(deleted))
        query = sql.SQL("SELECT count(*), {} FROM {}").format(live, self._table.identifier())
        conn = self._run.target()
        with conn.transaction():
            # One snapshot: a load writes the ledger in the transaction of the rows it counts.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            set_timeout(conn, context.COUNT_TIMEOUT_SECONDS)
            ledger = read_target_rows(conn, self._table)
            row = conn.execute(query).fetchone()
        assert row is not None
        return Audit(live=int(row[1]), rows=int(row[0]), ledger=ledger)

    def enforcing_index(self, key: Sequence[str]) -> str | None:
        return pg_inspect.index_enforcing_unique(self._run.target(), self._table, key)

    def duplicate_keys(self, key: Sequence[str]) -> DuplicateKeys:
        return pg_inspect.duplicate_keys(
            self._run.target(), self._table, key, timeout=context.COUNT_TIMEOUT_SECONDS
        )

    def compare(self, source: TableInfo) -> SchemaComparison:
        pipeline = self._run.pipeline
        return pg_inspect.compare_columns(
            self._run.target(),
            source,
            self._describe(),
            pipeline.sink.strategy.on_schema_change,
            pipeline.source.options.deleted_column,
            pipeline.sink.strategy.mode in KEYED_CHANGE_MODES,  # update/delete: some columns
            pipeline.sink.strategy.on_bad_rows == "reject",  # values cast: no retyped drift
        )

    def _describe(self) -> TableInfo:
        conn = self._run.target()
        with conn.transaction():
            return describe_table(conn, self._table)


class DeltaReads:
    """A Delta table, target or source: its reads import deltalake and polars (heavy) on use."""

    def __init__(self, path: str, run: context.CheckRun):
        self._run, self._path = run, path

    def exists(self) -> bool:
        from pgflow.sinks.delta.inspect import delta_exists

        return delta_exists(self._path, self._run.storage_options)

    def column_names(self) -> tuple[str, ...]:
        from pgflow.sinks.delta.inspect import delta_columns

        return tuple(delta_columns(self._path, self._run.storage_options).names())

    def row_count(self) -> int:
        from pgflow.sinks.delta.inspect import delta_row_count

        deleted = self._run.pipeline.source.options.deleted_column
        if deleted is None:
            return delta_row_count(self._path, self._run.storage_options)
        import polars as pl

        from pgflow.sinks.delta.scan import scan_delta_table

        # CDC's soft deletes: rows stamped in deleted_column are gone at the source.
        live = scan_delta_table(self._path, self._run.storage_options)
        count = live.filter(pl.col(deleted).is_null()).select(pl.len())
        return int(count.collect(engine="streaming").item())

    def ledger_rows(self) -> int | None:
        return None  # a Delta table's log counts its rows: row_count reads no data

    def audit(self) -> Audit:
        return Audit(live=self.row_count())

    def enforcing_index(self, key: Sequence[str]) -> str | None:
        return None  # Delta tables have no indexes

    def duplicate_keys(self, key: Sequence[str]) -> DuplicateKeys:
        from pgflow.sinks.delta.inspect import delta_duplicate_keys

        return delta_duplicate_keys(self._path, key, self._run.storage_options)

    def compare(self, source: TableInfo) -> SchemaComparison:
        import polars as pl

        from pgflow.sinks.delta.inspect import compare_delta_columns, delta_columns

        table = delta_columns(self._path, self._run.storage_options)
        options = self._run.pipeline.source.options
        deleted = options.deleted_column
        if deleted in table and source.column(deleted or "") is None:
            # pgflow's soft-delete column, not one the source dropped.
            table = pl.Schema({name: t for name, t in table.items() if name != deleted})
        comparison = compare_delta_columns(source, table, self._run.pipeline.sink.strategy)
        if options.incremental_strategy == "cdc" and comparison.retyped:
            # A load casts into the table's types; CDC stops instead (flows/cdc/delta_schema).
            stop = f"CDC stops on retyped column(s) {', '.join(comparison.retyped)}"
            comparison = replace(comparison, refused=(*comparison.refused, stop))
        return comparison


def missing_target(
    pipeline: PipelineSpec, name: str, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    # Before the first load a missing target is expected; after one, someone dropped it.
    if latest_materialization(instance, pipeline) is None:
        return result(
            pipeline,
            name,
            False,
            context.WARN,
            f"{target_name(pipeline)} does not exist yet: nothing to check before the first "
            "load (materialize the asset)",
        )
    return result(
        pipeline,
        name,
        False,
        context.ERROR,
        f"{target_name(pipeline)} does not exist, although the asset was materialized: was it "
        "dropped? Materialize the asset (with run config reset: true) to rebuild it",
    )

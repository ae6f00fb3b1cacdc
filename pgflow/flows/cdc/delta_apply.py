"""Apply a Delta member's staged batch (delta_stage.py): ONE Delta commit, a merge carrying the
batch's end LSN as the pipeline's app transaction (sinks/delta/cdc_state.py).

On the batch's source session, set-based: unchanged TOAST values are filled from earlier
staged versions of the row (segment_apply; a value none knows stays listed, and the merge
takes the table's), generated columns are computed, each key keeps its last change. Then the
temporary table is streamed out with ArrowRead (bounded batches, numerics planned against the
table's kept types, as a Delta load reads) into the merge:

    MERGE ON <key>  WHEN MATCHED AND op = 'D' THEN DELETE (soft: SET deleted_column)
                    WHEN MATCHED AND op = 'U' THEN UPDATE (unchanged columns keep t's value)
                    WHEN NOT MATCHED AND op = 'U' THEN INSERT
                    [a TRUNCATE in the batch: WHEN NOT MATCHED BY SOURCE THEN DELETE (soft:
                     SET deleted_column = the truncate's time where it is NULL)]

merge_schema adds the columns the source gained (only those the maps name: the change columns
stay out). A merge that changes nothing makes no commit: an empty one then carries the LSN.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl
from deltalake import CommitProperties, DeltaTable
from deltalake.table import TableMerger
from psycopg import sql

from pgflow.flows.cdc.delta_moves import MovedRead, OldKeys, moved_values
from pgflow.flows.cdc.delta_stage import DeltaStaged
from pgflow.flows.cdc.model import BatchResult, CdcApplyError, DeltaCdcTarget
from pgflow.flows.cdc.segment import OP, UNCHANGED_COLUMNS
from pgflow.flows.cdc.segment_apply import compute_generated, resolve_unchanged
from pgflow.sinks.delta.cdc_state import cdc_commit_properties, commit_position
from pgflow.sinks.delta.context import GuardedBatches, default_writer_properties
from pgflow.sinks.delta.keys import SOURCE_ALIAS, TARGET_ALIAS, key_predicate, quote
from pgflow.sinks.delta.numerics import kept_types, plan_numerics
from pgflow.sinks.delta.retyped import check_list_columns
from pgflow.sinks.delta.table import open_table
from pgflow.sinks.postgres import keys
from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.catalog import Column
from pgflow.sources.postgres import PostgresTableSource

BIGINT_OID, TEXT_OID, TEXT_ARRAY_OID = 20, 25, 1009


def apply_delta_batch(
    target: DeltaCdcTarget, staged: DeltaStaged, pipeline: str, identity: str
) -> BatchResult:
    """Apply `staged` to the Delta table in one commit with its end LSN; the result."""
    result = staged.result
    if staged.truncated_at is not None and target.on_truncate == "fail":
        raise CdcApplyError(
            f"the source table was truncated (committed {staged.truncated_at.isoformat()}) "
            "and source.options.on_truncate is fail; nothing of this batch was applied. Set "
            "on_truncate: apply, or re-snapshot with reset: true"
        )
    assert result.end_lsn is not None
    table = open_table(target.path, target.storage_options)
    if table is None:
        raise CdcApplyError(
            f"the Delta table at {target.path} is gone; re-snapshot with reset: true"
        )
    moved = _settle_rows(target, staged, table) if staged.rows else None
    commit = cdc_commit_properties(pipeline, identity, result.end_lsn)
    version = table.version()
    metrics = _merge(table, target, staged, commit, moved)
    table.update_incremental()
    if table.version() == version:  # the merge changed nothing: the LSN alone
        commit_position(table, pipeline, identity, result.end_lsn)
    deleted = metrics.get("num_target_rows_deleted", 0)
    written = metrics.get("num_target_rows_inserted", 0) + metrics.get("num_target_rows_updated", 0)
    if target.deleted_column is not None:  # soft deletes are updates of deleted_column
        deleted = staged.soft_deleted
        written = max(0, written - deleted)
    result.rows_applied += written
    result.rows_deleted += deleted
    return result


def _settle_rows(
    target: DeltaCdcTarget, staged: DeltaStaged, table: DeltaTable
) -> tuple[pl.DataFrame, list[str]] | None:
    """Unchanged values from earlier versions, generated columns, each key's last change;
    the values moved rows take from the table (None: none)."""
    ctx = ApplyContext(
        staged.log,
        staged.stage,
        staged.stage,
        staged.catalog.column_names,
        target.strategy,
        staged.catalog,
        staged.catalog,
    )
    if staged.unchanged:
        names = [c for c in staged.catalog.column_names if c in staged.unchanged]
        resolve_unchanged(ctx, names, staged.key_changed_with_unchanged, from_target=False)
    compute_generated(ctx)
    moved = _moved(target, staged, table) if staged.key_changed_with_unchanged else None
    keys.keep_last(ctx)
    if target.deleted_column is not None:
        row = staged.log.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} = 'D'").format(
                staged.stage.identifier(), sql.Identifier(OP)
            )
        ).fetchone()
        staged.soft_deleted = row[0] if row else 0
    return moved


def _moved(
    target: DeltaCdcTarget, staged: DeltaStaged, table: DeltaTable
) -> tuple[pl.DataFrame, list[str]] | None:
    """The values moved rows still lack, from the table (delta_moves.py); read before each
    key keeps its last change, which may drop the staged delete naming the old key."""
    source = StagedSource(staged, with_order=True)
    old_keys = ArrowRead(OldKeys(staged, source, target.strategy.unique_key), prefetch=0)
    plan_numerics(old_keys, kept_types(table, rewrites=False), target.numeric_as)
    return moved_values(staged, old_keys, table, target)


def _merge(
    table: DeltaTable,
    target: DeltaCdcTarget,
    staged: DeltaStaged,
    commit: CommitProperties,
    moved: tuple[pl.DataFrame, list[str]] | None,
) -> dict[str, int]:
    source = StagedSource(staged, with_order=moved is not None)
    read = ArrowRead(source) if moved is None else MovedRead(source, *moved)
    try:
        kept = kept_types(table, rewrites=False)
        plan_numerics(read, kept, target.numeric_as)
        check_list_columns(kept, read, target.path)
        batches = GuardedBatches(read)
        try:
            merger = table.merge(
                batches.reader(),
                key_predicate(target.strategy, staged.catalog),
                source_alias=SOURCE_ALIAS,
                target_alias=TARGET_ALIAS,
                merge_schema=True,
                streamed_exec=True,
                writer_properties=default_writer_properties(),
                commit_properties=commit,
            )
            merger = _clauses(merger, table, target, staged)
            metrics: dict[str, int] = merger.execute()
        except Exception as error:
            batches.reraise(error)
            raise
        return metrics
    finally:
        read.close()


def _clauses(
    merger: TableMerger, table: DeltaTable, target: DeltaCdcTarget, staged: DeltaStaged
) -> TableMerger:
    have = {f.name for f in table.schema().fields}
    data = staged.catalog.column_names
    op = f"{SOURCE_ALIAS}.{quote(OP)}"
    deleted = target.deleted_column
    if deleted is None:
        merger = merger.when_matched_delete(predicate=f"{op} = 'D'")
    else:
        merger = merger.when_matched_update(
            {quote(deleted): f"{SOURCE_ALIAS}.{quote(deleted)}"}, predicate=f"{op} = 'D'"
        )
    updates = {
        quote(c): _kept_value(c, c in have and c in staged.unchanged)
        for c in data
        if c not in target.strategy.unique_key
    }
    if updates:
        merger = merger.when_matched_update(updates, predicate=f"{op} = 'U'")
    inserts = {quote(c): f"{SOURCE_ALIAS}.{quote(c)}" for c in data}
    merger = merger.when_not_matched_insert(inserts, predicate=f"{op} = 'U'")
    if staged.truncated_at is not None:
        if deleted is None:
            merger = merger.when_not_matched_by_source_delete()
        else:
            when = staged.truncated_at.isoformat()
            merger = merger.when_not_matched_by_source_update(
                {quote(deleted): f"CAST('{when}' AS TIMESTAMP)"},
                predicate=f"{TARGET_ALIAS}.{quote(deleted)} IS NULL",
            )
    return merger


def _kept_value(column: str, maybe_unchanged: bool) -> str:
    """The merge's new value of `column`: the staged one, or the table's when the change left
    it unchanged (a TOASTed value no earlier version in the batch knew)."""
    new = f"{SOURCE_ALIAS}.{quote(column)}"
    if not maybe_unchanged:
        return new
    name = "'" + column.replace("'", "''") + "'"
    listed = f"array_has({SOURCE_ALIAS}.{quote(UNCHANGED_COLUMNS)}, {name})"
    return f"CASE WHEN {listed} THEN {TARGET_ALIAS}.{quote(column)} ELSE {new} END"


class StagedSource(PostgresTableSource):
    """The batch's temporary table as a source for ArrowRead, on the batch's session
    (autocommit: the table is the session's, no snapshot is needed)."""

    def __init__(self, staged: DeltaStaged, *, with_order: bool = False) -> None:
        super().__init__(staged.log.conn, staged.stage)
        columns = [*staged.catalog.columns, _text(OP, False), _text(UNCHANGED_COLUMNS, True)]
        if with_order:  # the row's number, which moved rows are patched by
            columns.append(_bigint(keys.ORDER_COLUMN))
        self._info = replace(staged.catalog, table=staged.stage, columns=tuple(columns))

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None


def _bigint(name: str) -> Column:
    return Column(
        name=name,
        type_sql="bigint",
        type_oid=BIGINT_OID,
        kind="b",
        not_null=False,
        base_type_sql="bigint",
        base_type_oid=BIGINT_OID,
        element_oid=0,
        element_kind="",
        element_type_sql="",
        enum_name=None,
    )


def _text(name: str, array: bool) -> Column:
    oid = TEXT_ARRAY_OID if array else TEXT_OID
    sql_type = "text[]" if array else "text"
    return Column(
        name=name,
        type_sql=sql_type,
        type_oid=oid,
        kind="b",
        not_null=False,
        base_type_sql=sql_type,
        base_type_oid=oid,
        element_oid=TEXT_OID if array else 0,
        element_kind="b" if array else "",
        element_type_sql="text" if array else "",
        enum_name=None,
    )

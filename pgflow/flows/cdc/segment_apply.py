"""The set-based SQL that applies one staged segment to the target: unchanged TOAST values
filled from the row's previous version (earlier in the batch, else the target: never NULL),
generated columns computed, each key's last change kept, deletes applied (hard, or a
timestamp in `deleted_column`), then the upserts through the pipeline's keyed strategy."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgflow.flows.cdc.model import BatchResult, CdcApplyError, CdcTarget
from pgflow.flows.cdc.segment import FROM, OP, UNCHANGED_COLUMNS, StagedSegment
from pgflow.sinks.postgres import keys, staging
from pgflow.sinks.postgres.apply import (
    ApplyContext,
    few_staged_rows,
    insert_from_staging,
    prefer_index_probes,
)
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.strategies import staged_strategy_for
from pgflow.sources.catalog import describe_table


def apply_segment(
    log: SqlLog, target: CdcTarget, staged: StagedSegment, result: BatchResult
) -> None:
    """Apply what a segment staged, in order, and drop its staging table."""
    if staged.rows:
        _SegmentApply(log, target, staged, result).run()
    staging.drop_staging(log, staged.stage)


class _SegmentApply:
    """The set-based SQL that applies one staged segment to the target."""

    def __init__(self, log: SqlLog, target: CdcTarget, staged: StagedSegment, result: BatchResult):
        self.log, self.target, self.result = log, target, result
        self.columns = staged.columns
        self.unchanged = staged.unchanged
        self.key_changed_with_unchanged = staged.key_changed_with_unchanged
        target_info = describe_table(log.conn, target.table)
        self.ctx = ApplyContext(
            log,
            target.table,
            staged.stage,
            staged.columns,
            target.strategy,
            staged.source,
            target_info,
        )

    def run(self) -> None:
        # Statistics on the key let the planner join staging by index, not by hashing
        # the whole target; cheap, as it samples only these columns.
        self.log.execute(
            sql.SQL("ANALYZE {} ({}, {}, {})").format(
                self.ctx.staging_sql,
                keys.key_list(self.ctx),
                sql.Identifier(keys.ORDER_COLUMN),
                sql.Identifier(OP),
            )
        )
        self._resolve_unchanged()
        self._compute_generated()
        keys.keep_last(self.ctx)
        if self._deletes_in_the_merge_pass():
            self._delete_every_staged_key()
            self.result.rows_applied += insert_from_staging(self.ctx)
        else:
            self._apply_deletes()
            self.result.rows_applied += (
                staged_strategy_for(self.target.strategy).apply(self.ctx).rows
            )

    def _deletes_in_the_merge_pass(self) -> bool:
        """delete_insert with hard deletes: the target rows a staged delete removes and those
        a staged row replaces go in one DELETE, one pass over the target instead of two."""
        strategy = self.target.strategy
        return (
            self.target.deleted_column is None
            and strategy.mode == "incremental_merge"
            and strategy.merge_policy == "delete_insert"
        )

    def _delete_every_staged_key(self) -> None:
        ctx = self.ctx
        if few_staged_rows(ctx):
            prefer_index_probes(ctx)
        op = sql.Identifier(OP)
        statement = sql.SQL(
            "WITH gone AS (DELETE FROM {} t USING {} s WHERE {} RETURNING s.{})"
            " SELECT count(*) FILTER (WHERE {} = 'D') FROM gone"
        ).format(ctx.target_sql, ctx.staging_sql, keys.key_match(ctx, "t", "s"), op, op)
        row = self.log.execute(statement).fetchone()
        self.result.rows_deleted += row[0] if row else 0
        self.log.execute(sql.SQL("DELETE FROM {} WHERE {} = 'D'").format(ctx.staging_sql, op))

    def _resolve_unchanged(self) -> None:
        if not self.unchanged:
            return
        names = [self.columns[i] for i in sorted(self.unchanged)]
        self.log.execute(
            sql.SQL("CREATE INDEX ON {} ({}, {})").format(
                self.ctx.staging_sql, keys.key_list(self.ctx), sql.Identifier(keys.ORDER_COLUMN)
            )
        )
        if self.key_changed_with_unchanged:
            for seq in self._key_changes_with_unchanged():
                self._fill_from_previous_version(names, seq)
        self._fill_from_previous_version(names, None)

    def _key_changes_with_unchanged(self) -> list[int]:
        """The staged rows whose key changed and that lack a value, in order."""
        rows = self.log.execute(
            sql.SQL(
                "SELECT {seq} FROM {s} WHERE {origin} IS NOT NULL AND {u} IS NOT NULL"
                " ORDER BY {seq}"
            ).format(
                seq=sql.Identifier(keys.ORDER_COLUMN),
                s=self.ctx.staging_sql,
                origin=sql.Identifier(FROM),
                u=sql.Identifier(UNCHANGED_COLUMNS),
            )
        ).fetchall()
        return [seq for (seq,) in rows]

    def _fill_from_previous_version(self, names: list[str], key_change_seq: int | None) -> None:
        """Fill UNCHANGED columns from the latest earlier staged version that knows the value,
        else from the target's row. A row whose key changed looks up its old key (row `d`, the
        staged delete of that key), one at a time in order so chains of key changes resolve;
        the other rows look up their own key (`r`), all at once."""
        ctx = self.ctx
        alias = "r" if key_change_seq is None else "d"
        seq, u, origin = (sql.Identifier(n) for n in (keys.ORDER_COLUMN, UNCHANGED_COLUMNS, FROM))
        assignments = [
            sql.SQL(
                "{c} = CASE WHEN {name} = ANY(r.{u}) THEN coalesce("
                "(SELECT p.{c} FROM {s} p WHERE {p_match} AND p.{seq} < {a}.{seq} AND p.{op} = 'U'"
                " AND NOT ({name} = ANY(coalesce(p.{u}, '{{}}'))) ORDER BY p.{seq} DESC LIMIT 1),"
                " (SELECT t.{c} FROM {t} t WHERE {t_match})) ELSE r.{c} END"
            ).format(
                c=sql.Identifier(name),
                name=sql.Literal(name),
                u=u,
                s=ctx.staging_sql,
                p_match=keys.key_match(ctx, "p", alias),
                seq=seq,
                a=sql.Identifier(alias),
                op=sql.Identifier(OP),
                t=ctx.target_sql,
                t_match=keys.key_match(ctx, "t", alias),
            )
            for name in names
        ]
        if key_change_seq is None:
            rows = sql.SQL(" WHERE r.{u} IS NOT NULL AND r.{origin} IS NULL").format(
                u=u, origin=origin
            )
        else:
            rows = sql.SQL(" FROM {s} d WHERE d.{seq} = r.{origin} AND r.{seq} = {n}").format(
                s=ctx.staging_sql, seq=seq, origin=origin, n=sql.Literal(key_change_seq)
            )
        self.log.execute(
            sql.SQL("UPDATE {} r SET {}, {} = NULL{}").format(
                ctx.staging_sql, sql.SQL(", ").join(assignments), u, rows
            )
        )

    def _compute_generated(self) -> None:
        """Compute the source's generated columns (which logical replication does not send)
        from their expressions, once every other value of the row is known."""
        computed = [c for c in self.ctx.source.columns if c.generation]
        if not computed:
            return
        # The expressions come from the source catalog (pg_get_expr): trusted SQL.
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = ({})").format(sql.Identifier(c.name), sql.SQL(c.generation))
            for c in computed
        )
        statement = sql.SQL("UPDATE {} SET {} WHERE {} = 'U'").format(
            self.ctx.staging_sql, assignments, sql.Identifier(OP)
        )
        try:
            with self.log.conn.transaction():
                self.log.execute(statement)
        except psycopg.Error as error:
            names = ", ".join(f"{c.name} (GENERATED ALWAYS AS ({c.generation}))" for c in computed)
            raise CdcApplyError(
                f"logical replication does not send the source's generated column(s) {names}; "
                f"pgflow computes them in the sink, where this failed: {error}. Create the "
                "functions and types the expression uses in the sink, or re-snapshot with "
                "reset: true after making the column a plain one"
            ) from error

    def _apply_deletes(self) -> None:
        ctx = self.ctx
        op = sql.Identifier(OP)
        deleted = self.target.deleted_column
        if deleted is None:
            statement = sql.SQL("DELETE FROM {} t USING {} s WHERE s.{} = 'D' AND {}").format(
                ctx.target_sql, ctx.staging_sql, op, keys.key_match(ctx, "t", "s")
            )
        else:
            statement = sql.SQL(
                "UPDATE {} t SET {d} = s.{d} FROM {} s WHERE s.{} = 'D' AND {}"
            ).format(
                ctx.target_sql,
                ctx.staging_sql,
                op,
                keys.key_match(ctx, "t", "s"),
                d=sql.Identifier(deleted),
            )
        self.result.rows_deleted += self.log.execute(statement).rowcount
        self.log.execute(sql.SQL("DELETE FROM {} WHERE {} = 'D'").format(ctx.staging_sql, op))

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
from pgflow.sinks.postgres.row_change import RowChange
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
            removed = self._delete_every_staged_key()
            inserted = insert_from_staging(self.ctx)
            self.result.rows_applied += inserted
            self._changed(RowChange.added(inserted - removed))
        else:
            self._changed(RowChange.added(-self._apply_deletes()))
            applied = staged_strategy_for(self.target.strategy).apply(self.ctx)
            self.result.rows_applied += applied.rows
            self._changed(applied.change)

    def _changed(self, change: RowChange) -> None:
        self.result.row_change = self.result.row_change.then(change)

    def _deletes_in_the_merge_pass(self) -> bool:
        """delete_insert with hard deletes: the target rows a staged delete removes and those
        a staged row replaces go in one DELETE, one pass over the target instead of two."""
        strategy = self.target.strategy
        return (
            self.target.deleted_column is None
            and strategy.mode == "incremental_merge"
            and strategy.merge_policy == "delete_insert"
        )

    def _delete_every_staged_key(self) -> int:
        """Rows removed: those a staged delete removes and those a staged row replaces."""
        ctx = self.ctx
        if few_staged_rows(ctx):
            prefer_index_probes(ctx)
        op = sql.Identifier(OP)
        statement = sql.SQL(
            "WITH gone AS (DELETE FROM {} t USING {} s WHERE {} RETURNING s.{})"
            " SELECT count(*) FILTER (WHERE {} = 'D'), count(*) FROM gone"
        ).format(ctx.target_sql, ctx.staging_sql, keys.key_match(ctx, "t", "s"), op, op)
        row = self.log.execute(statement).fetchone()
        self.result.rows_deleted += row[0] if row else 0
        self.log.execute(sql.SQL("DELETE FROM {} WHERE {} = 'D'").format(ctx.staging_sql, op))
        return int(row[1]) if row else 0

    def _resolve_unchanged(self) -> None:
        if self.unchanged:
            names = [self.columns[i] for i in sorted(self.unchanged)]
            resolve_unchanged(self.ctx, names, self.key_changed_with_unchanged, from_target=True)

    def _compute_generated(self) -> None:
        compute_generated(self.ctx)

    def _apply_deletes(self) -> int:
        """Apply the staged deletes; rows removed (a soft delete keeps its row)."""
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
        affected = self.log.execute(statement).rowcount
        self.result.rows_deleted += affected
        self.log.execute(sql.SQL("DELETE FROM {} WHERE {} = 'D'").format(ctx.staging_sql, op))
        return affected if deleted is None else 0


def resolve_unchanged(
    ctx: ApplyContext, names: list[str], key_changed: bool, *, from_target: bool
) -> None:
    """Fill the staged rows' UNCHANGED columns `names` from the latest earlier staged version
    that knows the value; `from_target`: else from the target's row (a Postgres target), so
    none stays unknown. Without it a value no earlier version knows stays listed in
    UNCHANGED_COLUMNS (a Delta target's merge takes it from the table's row)."""
    ctx.log.execute(
        sql.SQL("CREATE INDEX ON {} ({}, {})").format(
            ctx.staging_sql, keys.key_list(ctx), sql.Identifier(keys.ORDER_COLUMN)
        )
    )
    if key_changed:
        for seq in _key_changes_with_unchanged(ctx):
            _fill_from_previous_version(ctx, names, seq, from_target)
    _fill_from_previous_version(ctx, names, None, from_target)


def _key_changes_with_unchanged(ctx: ApplyContext) -> list[int]:
    """The staged rows whose key changed and that lack a value, in order."""
    rows = ctx.log.execute(
        sql.SQL(
            "SELECT {seq} FROM {s} WHERE {origin} IS NOT NULL AND {u} IS NOT NULL ORDER BY {seq}"
        ).format(
            seq=sql.Identifier(keys.ORDER_COLUMN),
            s=ctx.staging_sql,
            origin=sql.Identifier(FROM),
            u=sql.Identifier(UNCHANGED_COLUMNS),
        )
    ).fetchall()
    return [seq for (seq,) in rows]


_EARLIER = (
    "SELECT {what} FROM {s} p WHERE {p_match} AND p.{seq} < {a}.{seq} AND p.{op} = 'U'"
    " AND NOT ({name} = ANY(coalesce(p.{u}, '{{}}')))"
)


def _fill_from_previous_version(
    ctx: ApplyContext, names: list[str], key_change_seq: int | None, from_target: bool
) -> None:
    """A row whose key changed looks up its old key (row `d`, the staged delete of that key),
    one at a time in order so chains of key changes resolve; the other rows look up their own
    key (`r`), all at once."""
    alias = "r" if key_change_seq is None else "d"
    seq, u, origin = (sql.Identifier(n) for n in (keys.ORDER_COLUMN, UNCHANGED_COLUMNS, FROM))
    common = {
        "s": ctx.staging_sql,
        "p_match": keys.key_match(ctx, "p", alias),
        "seq": seq,
        "a": sql.Identifier(alias),
        "op": sql.Identifier(OP),
        "u": u,
    }
    fallback = (
        sql.SQL("(SELECT t.{c} FROM {t} t WHERE {t_match})") if from_target else sql.SQL("r.{c}")
    )
    template = sql.SQL(
        "{c} = CASE WHEN {name} = ANY(r.{u}) THEN coalesce(("
        + _EARLIER
        + " ORDER BY p.{seq} DESC LIMIT 1), {fallback}) ELSE r.{c} END"
    )
    assignments = [
        template.format(
            c=sql.Identifier(name),
            name=sql.Literal(name),
            what=sql.SQL("p.{}").format(sql.Identifier(name)),
            fallback=fallback.format(
                c=sql.Identifier(name), t=ctx.target_sql, t_match=keys.key_match(ctx, "t", alias)
            ),
            **common,
        )
        for name in names
    ]
    if from_target:
        still_unknown: sql.Composable = sql.SQL("NULL")
    else:  # the names no earlier version knows
        still_unknown = sql.SQL(
            "(SELECT array_agg(x) FROM unnest(r.{u}) AS x WHERE NOT EXISTS (" + _EARLIER + "))"
        ).format(what=sql.SQL("1"), name=sql.SQL("x"), **common)
    if key_change_seq is None:
        rows = sql.SQL(" WHERE r.{u} IS NOT NULL AND r.{origin} IS NULL").format(u=u, origin=origin)
    else:
        rows = sql.SQL(" FROM {s} d WHERE d.{seq} = r.{origin} AND r.{seq} = {n}").format(
            s=ctx.staging_sql, seq=seq, origin=origin, n=sql.Literal(key_change_seq)
        )
    ctx.log.execute(
        sql.SQL("UPDATE {} r SET {}, {} = {}{}").format(
            ctx.staging_sql, sql.SQL(", ").join(assignments), u, still_unknown, rows
        )
    )


def compute_generated(ctx: ApplyContext) -> None:
    """Compute the source's generated columns (which logical replication does not send)
    from their expressions, once every other value of the row is known."""
    computed = [c for c in ctx.source.columns if c.generation]
    if not computed:
        return
    # The expressions come from the source catalog (pg_get_expr): trusted SQL.
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = ({})").format(sql.Identifier(c.name), sql.SQL(c.generation)) for c in computed
    )
    statement = sql.SQL("UPDATE {} SET {} WHERE {} = 'U'").format(
        ctx.staging_sql, assignments, sql.Identifier(OP)
    )
    try:
        with ctx.log.conn.transaction():
            ctx.log.execute(statement)
    except psycopg.Error as error:
        names = ", ".join(f"{c.name} (GENERATED ALWAYS AS ({c.generation}))" for c in computed)
        raise CdcApplyError(
            f"logical replication does not send the source's generated column(s) {names}; "
            f"pgflow computes them in the sink, where this failed: {error}. Create the "
            "functions and types the expression uses in the sink, or re-snapshot with "
            "reset: true after making the column a plain one"
        ) from error

"""Key changes whose unchanged TOAST value only the Delta table holds.

An UPDATE that changes a row's key and leaves a TOASTed value alone sends the value as
"unchanged". Earlier versions of the row in the batch fill it when they can (segment_apply);
otherwise the value is in the Delta row of the OLD key, which the merge, matching the new
key, never sees. For those rows (few: one per such update) the old keys are read from the
batch's table as Arrow (typed as the Delta table holds them), their values looked up in the
table the merge builds on, and patched into the merge's read as it streams: the row is
inserted (or updates its new key) with the value, and its unchanged list is cleared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import polars as pl
from deltalake import DeltaTable
from psycopg import sql

from pgflow.flows.cdc.delta_stage import DeltaStaged
from pgflow.flows.cdc.model import DeltaCdcTarget
from pgflow.flows.cdc.segment import FROM, OP, UNCHANGED_COLUMNS
from pgflow.sinks.postgres.keys import ORDER_COLUMN
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.delta_paths import scan_delta
from pgflow.sources.postgres import PostgresTableSource

FOUND = "_pgflow_found"
OLD = "_pgflow_old:"


class MovedRead(ArrowRead):
    """The merge's read with the values of moved rows patched in (see the module doc)."""

    def __init__(self, source: PostgresTableSource, patch: pl.DataFrame, names: Sequence[str]):
        super().__init__(source)
        self.patch, self.names = patch, list(names)

    def frames(self) -> Iterator[pl.DataFrame]:
        return (self._patched(frame) for frame in super().frames())

    def _patched(self, frame: pl.DataFrame) -> pl.DataFrame:
        joined = frame.join(self.patch, on=ORDER_COLUMN, how="left")
        found = pl.col(FOUND).fill_null(False)
        patched = [
            pl.when(found & pl.col(UNCHANGED_COLUMNS).list.contains(name).fill_null(False))
            .then(pl.col(OLD + name).cast(frame.schema[name]))
            .otherwise(pl.col(name))
            .alias(name)
            for name in self.names
        ]
        cleared = (
            pl.when(found)
            .then(pl.lit(None, dtype=frame.schema[UNCHANGED_COLUMNS]))
            .otherwise(pl.col(UNCHANGED_COLUMNS))
            .alias(UNCHANGED_COLUMNS)
        )
        return joined.with_columns(*patched, cleared).select(frame.columns)


def moved_values(
    staged: DeltaStaged, old_keys: ArrowRead, table: DeltaTable, target: DeltaCdcTarget
) -> tuple[pl.DataFrame, list[str]] | None:
    """The moved rows' unchanged values from the table: ORDER_COLUMN, FOUND and the values
    as OLD + name; and the names. None when no row needs one."""
    try:
        old = pl.concat(list(old_keys.frames()), how="vertical")
    finally:
        old_keys.close()
    if old.height == 0:
        return None
    keys = list(target.strategy.unique_key)
    have = {f.name for f in table.schema().fields}
    names = [c for c in staged.catalog.column_names if c in staged.unchanged and c in have]
    # The version the merge builds on, read the one way polars reads pgflow's tables.
    scan = scan_delta(target.path, target.storage_options, version=table.version())
    scan = scan.select(*keys, *names)
    for key in keys:  # narrows the files and row groups read before the join
        scan = scan.filter(pl.col(key).is_in(old[key].implode()))
    found = scan.join(old.lazy(), on=keys, how="inner", nulls_equal=True).collect()
    patch = found.select(
        pl.col(ORDER_COLUMN),
        pl.lit(True).alias(FOUND),
        *(pl.col(name).alias(OLD + name) for name in names),
    )
    return patch, names


class OldKeys(PostgresTableSource):
    """The old keys of the moved rows that still lack a value, with their row's number."""

    def __init__(self, staged: DeltaStaged, source: PostgresTableSource, keys: Sequence[str]):
        super().__init__(staged.log.conn, staged.stage)
        columns = [c for c in source.info.columns if c.name in keys or c.name == ORDER_COLUMN]
        self._info = source.info.__class__(
            table=staged.stage,
            columns=tuple(columns),
            primary_key=(),
            estimated_rows=None,
            is_partitioned=False,
        )
        self._stage = staged.stage

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def column_expression(self, name: str) -> sql.Composable:
        alias = "r" if name == ORDER_COLUMN else "d"
        return sql.Identifier(alias, name)

    def select_query(
        self, expressions: Sequence[sql.Composable], narrower: sql.Composable | None = None
    ) -> sql.Composed:
        return sql.SQL(
            "SELECT {} FROM {} r JOIN {} d ON d.{seq} = r.{origin}"
            " WHERE r.{op} = 'U' AND r.{u} IS NOT NULL AND r.{origin} IS NOT NULL"
        ).format(
            sql.SQL(", ").join(expressions),
            self._stage.identifier(),
            self._stage.identifier(),
            seq=sql.Identifier(ORDER_COLUMN),
            origin=sql.Identifier(FROM),
            op=sql.Identifier(OP),
            u=sql.Identifier(UNCHANGED_COLUMNS),
        )

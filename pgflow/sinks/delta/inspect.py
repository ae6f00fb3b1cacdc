"""Read-only probes of a Delta table for asset checks: row count, duplicate keys, drift.

The count comes from the Delta log (each add action's `numRecords`), not from the data;
duplicate keys are found by a streaming polars scan that holds one group per key value,
never the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from deltalake import DeltaTable

from pgflow.config.model import KEYED_CHANGE_MODES, StrategySpec
from pgflow.sinks.delta.numerics import fits_unconstrained
from pgflow.sinks.delta.scan import scan_delta_table
from pgflow.sinks.postgres.inspect import SAMPLE_KEYS, DuplicateKeys, SchemaComparison
from pgflow.sources.arrow_columns import arrow_column
from pgflow.sources.catalog import TableInfo
from pgflow.sources.delta import open_snapshot

_ROWS = "__pgflow_rows"


def delta_exists(path: str, storage_options: dict[str, str] | None = None) -> bool:
    return DeltaTable.is_deltatable(str(path), storage_options)


def delta_row_count(path: str, storage_options: dict[str, str] | None = None) -> int:
    """Rows of the table's latest version, from the log; a scan only when a file lacks stats."""
    rows = open_snapshot(str(path), storage_options=storage_options).rows
    if rows is not None:
        return rows
    scan = scan_delta_table(path, storage_options)
    return int(scan.select(pl.len()).collect(engine="streaming").item())


def delta_duplicate_keys(
    path: str,
    key: Sequence[str],
    storage_options: dict[str, str] | None = None,
    sample: int = SAMPLE_KEYS,
) -> DuplicateKeys:
    """Key values held by more than one row (nulls group together, as in a Delta merge's
    null-safe key match)."""
    scan = scan_delta_table(path, storage_options).select(list(key))
    repeated = scan.group_by(list(key)).agg(pl.len().alias(_ROWS)).filter(pl.col(_ROWS) > 1)
    totals, examples = pl.collect_all(
        [
            repeated.select(pl.len().alias("keys"), pl.col(_ROWS).sum().alias("rows")),
            repeated.sort(_ROWS, descending=True).head(sample),
        ],
        engine="streaming",
    )
    keys, rows = totals.row(0)
    found = tuple(
        ({k: None if row[k] is None else str(row[k]) for k in key}, int(row[_ROWS]))
        for row in examples.iter_rows(named=True)
    )
    return DuplicateKeys(int(keys or 0), int(rows or 0), found)


def delta_columns(path: str, storage_options: dict[str, str] | None = None) -> pl.Schema:
    """The table's columns as polars types (what a scan of it returns)."""
    return scan_delta_table(path, storage_options).collect_schema()


def compare_delta_columns(
    source: TableInfo, table: pl.Schema, strategy: StrategySpec
) -> SchemaComparison:
    """The drift a Delta sink load would meet, by the Delta sink's rules (table.check_columns).

    full_refresh overwrites the table's schema with the read's, so it takes any change.
    Otherwise new columns are added unless on_schema_change is fail, a dropped column stops
    the load, and a retyped column is cast into the table's type by delta-rs (values that do
    not cast fail the write), so it is reported but not refused.
    """
    wanted = {c.name: arrow_column(c).dtype for c in source.columns}
    added = tuple(name for name in wanted if name not in table)
    dropped = tuple(name for name in table if name not in wanted)
    retyped = tuple(
        f"{name} ({table[name]} -> {dtype})"
        for name, dtype in wanted.items()
        if name in table
        and table[name] != dtype
        and not fits_unconstrained(source.column(name), table[name])  # scale from the data
    )
    refused: list[str] = []
    if strategy.mode != "full_refresh":
        if added and strategy.on_schema_change == "fail":
            refused.append(f"new source column(s) {', '.join(added)}")
        if dropped and strategy.mode not in KEYED_CHANGE_MODES:  # those set some columns
            refused.append(
                f"column(s) {', '.join(dropped)} are in the Delta table but no longer in the source"
            )
    return SchemaComparison(added, dropped, retyped, tuple(refused))

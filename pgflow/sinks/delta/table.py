"""The Delta table a load writes: opening it, its data files, and whether the read still fits it."""

from __future__ import annotations

from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.sources.arrow import ArrowRead


class SchemaChanged(ValueError):
    """The source's columns no longer fit the Delta table; nothing was written."""


def check_columns(table: DeltaTable, read: ArrowRead, strategy: StrategySpec, path: str) -> None:
    """Columns the source gained are added unless on_schema_change is fail; none may go.

    Type changes are left to delta-rs, which refuses a batch that does not fit the table.
    """
    have = [field.name for field in table.schema().fields]
    gained = [name for name in read.schema.names() if name not in have]
    lost = [name for name in have if name not in read.schema]
    if gained and strategy.on_schema_change == "fail":
        raise SchemaChanged(
            f"the source has new column(s) {', '.join(gained)} that the Delta table at {path} "
            "lacks, and sink.strategy.on_schema_change is fail; nothing was written. Set it to "
            "add_columns, or run once with reset to rebuild the table"
        )
    if lost:
        raise SchemaChanged(
            f"the Delta table at {path} has column(s) {', '.join(lost)} that the source no "
            "longer has; nothing was written. Run once with reset to rebuild the table from "
            "the source"
        )


def open_table(path: str, storage_options: dict[str, str] | None = None) -> DeltaTable | None:
    """The Delta table at `path`, or None when there is none yet."""
    if not DeltaTable.is_deltatable(path, storage_options):
        return None
    return DeltaTable(path, storage_options=storage_options)


def data_files(table: DeltaTable | None) -> dict[str, int]:
    """The table's current data files and their sizes."""
    if table is None:
        return {}
    actions = table.get_add_actions(flatten=False)
    return dict(zip(actions["path"].to_pylist(), actions["size_bytes"].to_pylist(), strict=True))

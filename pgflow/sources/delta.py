"""Read one version of a Delta Lake table: its version, schema, data files and row batches.

A `DeltaSnapshot` pins one table version: the files it lists never change, so reading them
later (after a retry, in another process) gives the same rows in the same order. Files are
read with polars, file by file and batch by batch (`scan_parquet(...).collect_batches`), so
memory holds one batch, never a whole file.

What a data file does not hold is added back here:
- partition columns (Delta keeps them in the log, not in the Parquet file), from the file's
  add action, typed as the table schema says (an empty string partition value is NULL, as
  the Delta protocol serializes it);
- columns added to the table after the file was written (schema evolution), as NULLs;
- a column stored with another physical type (type widening, nanosecond timestamps) is cast to
  the table schema's type.

Refused with `UnsupportedDeltaTable` (the rows read would be wrong, not just slow):
- column mapping (`delta.columnMapping.mode` name or id): Parquet columns carry physical
  names that differ from the schema's;
- deletion vectors present on any file of the version: the file holds rows the table no
  longer has. A table that merely allows deletion vectors but has none is read normally.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from arro3.core import Table
from deltalake import DeltaTable

from pgflow.sources.delta_paths import file_uris
from pgflow.sources.pg_types import PG_TYPE_KEY

CHANGE_TYPE = "_change_type"
COMMIT_VERSION = "_commit_version"
# CDF change types that leave a row in the table after their commit.
PRESENT_AFTER = ("insert", "update_postimage")


class UnsupportedDeltaTable(ValueError):
    """The table uses a Delta feature this reader cannot honour; says which and why."""


@dataclass(frozen=True)
class DeltaColumn:
    name: str
    dtype: pl.DataType
    nullable: bool
    pg_type: str | None = None  # the Postgres type pgflow recorded when it wrote the column


@dataclass(frozen=True)
class DeltaFile:
    path: str  # as the log records it (relative, URL-encoded): the file's identity
    uri: str  # where to read it
    size_bytes: int
    num_records: int | None  # from the file statistics, when the writer kept them
    partition_values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeltaSnapshot:
    """One version of a Delta table: its shape and its data files, sorted by path."""

    table_uri: str
    version: int
    columns: tuple[DeltaColumn, ...]
    partition_columns: tuple[str, ...]
    files: tuple[DeltaFile, ...]
    configuration: Mapping[str, str]
    storage_options: Mapping[str, str] | None = None
    table_id: str = ""  # the log's metaData id: a table re-created at the path gets a new one

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> DeltaColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def change_data_feed(self) -> bool:
        return self.configuration.get("delta.enableChangeDataFeed", "").lower() == "true"

    @property
    def rows(self) -> int | None:
        """Rows in the version per file statistics, or None when a file has none."""
        counts = [f.num_records for f in self.files]
        return None if any(c is None for c in counts) else sum(c for c in counts if c)


def current_version(path: str, storage_options: Mapping[str, str] | None = None) -> int:
    """The table's latest version."""
    return DeltaTable(path, storage_options=_options(storage_options)).version()


def open_snapshot(
    path: str, version: int | None = None, storage_options: Mapping[str, str] | None = None
) -> DeltaSnapshot:
    """Pin `version` (default: the latest) and list its data files; refuses what it cannot read."""
    table = DeltaTable(path, version=version, storage_options=_options(storage_options))
    configuration = dict(table.metadata().configuration)
    _check_readable(table, configuration)
    polars_schema = pl.DataFrame(Table.from_batches([], schema=table.schema().to_arrow())).schema
    columns = tuple(
        DeltaColumn(
            f.name, polars_schema[f.name], bool(f.nullable), (f.metadata or {}).get(PG_TYPE_KEY)
        )
        for f in table.schema().fields
    )
    partition_columns = tuple(table.metadata().partition_columns)
    return DeltaSnapshot(
        table_uri=table.table_uri,
        version=table.version(),
        columns=columns,
        partition_columns=partition_columns,
        files=_files(table, partition_columns),
        configuration=configuration,
        storage_options=storage_options,
        table_id=str(table.metadata().id),
    )


def file_paths(
    path: str, version: int, storage_options: Mapping[str, str] | None = None
) -> frozenset[str]:
    """The data files of `version` by their log path (their identity across versions)."""
    table = DeltaTable(path, version=version, storage_options=_options(storage_options))
    return frozenset(pl.DataFrame(table.get_add_actions()).get_column("path").to_list())


def _options(storage_options: Mapping[str, str] | None) -> dict[str, str] | None:
    return dict(storage_options) if storage_options else None


def _check_readable(table: DeltaTable, configuration: Mapping[str, str]) -> None:
    mode = configuration.get("delta.columnMapping.mode", "none").lower()
    if mode != "none":
        raise UnsupportedDeltaTable(
            f"Delta table {table.table_uri} uses column mapping (delta.columnMapping.mode="
            f"{mode}): its Parquet files name columns by physical ids, which this reader does "
            f"not translate. Rewrite the table without column mapping to sync it"
        )
    features = table.protocol().reader_features or []
    if "deletionVectors" in features:
        with_vectors = pl.DataFrame(table.deletion_vectors())
        if with_vectors.height:
            sample = ", ".join(with_vectors.get_column("filepath").head(3).to_list())
            raise UnsupportedDeltaTable(
                f"Delta table {table.table_uri} version {table.version()} has deletion vectors "
                f"on {with_vectors.height} file(s) (e.g. {sample}): those files still hold "
                f"deleted rows. Purge them first (OPTIMIZE ... / REORG TABLE ... APPLY (PURGE) "
                f"in Spark or Databricks), or disable delta.enableDeletionVectors and rewrite"
            )


def _files(table: DeltaTable, partition_columns: Sequence[str]) -> tuple[DeltaFile, ...]:
    actions = pl.DataFrame(table.get_add_actions(flatten=False))
    uris = file_uris(table)  # same order as the add actions, paths decoded, real local root
    if len(uris) != actions.height:
        raise RuntimeError(
            f"Delta table {table.table_uri}: {len(uris)} file URIs for {actions.height} add actions"
        )
    files = []
    partitions = (
        actions.get_column("partition").to_list()
        if partition_columns and "partition" in actions.columns
        else [None] * actions.height
    )
    # Only the columns used: the statistics' min/max can hold values Python has no form for
    # (dates before year 1).
    wanted = actions.select(
        c for c in ("path", "size_bytes", "num_records") if c in actions.columns
    )
    for row, uri, values in zip(wanted.iter_rows(named=True), uris, partitions, strict=True):
        files.append(
            DeltaFile(
                path=row["path"],
                uri=uri,
                size_bytes=row["size_bytes"],
                num_records=row.get("num_records"),
                partition_values=dict(values or {}),
            )
        )
    return tuple(sorted(files, key=lambda f: f.path))


def file_label(file: DeltaFile) -> str:
    return urllib.parse.unquote(file.path)


def read_batches(
    snapshot: DeltaSnapshot,
    file: DeltaFile,
    batch_size: int,
    *,
    offset: int = 0,
    columns: Sequence[str] | None = None,
) -> Iterator[pl.DataFrame]:
    """The rows of `file` from row `offset`, `columns` (default: all) in the table's types.

    Rows come in the file's order (fixed: Parquet files are immutable), in batches of
    `batch_size` rows; the file is read slice by slice, never loaded whole.
    """
    frame = _typed_scan(snapshot, file, columns)
    # One collect per slice: polars reads only the row groups (and pages) a slice covers.
    # Its streaming batches would decode row groups ahead of the consumer, which held two
    # to three times the memory (1.2M rows: 201 MB against 86 MB). The file's own end ends
    # the loop, not the log's row count, which a writer may leave out.
    start = offset
    while True:
        batch = frame.slice(start, batch_size).collect()
        if batch.height:
            yield batch
        if batch.height < batch_size:
            return
        start += batch_size


def file_rows(snapshot: DeltaSnapshot, file: DeltaFile) -> int:
    """The rows `file` holds, from its Parquet footer (the log's numRecords may be absent)."""
    return int(_scan(snapshot, file).select(pl.len()).collect().item())


def _scan(snapshot: DeltaSnapshot, file: DeltaFile) -> pl.LazyFrame:
    return pl.scan_parquet(
        file.uri,
        hive_partitioning=False,  # partition values come from the log, typed
        glob=False,  # a file name is a name, not a pattern
        storage_options=_options(snapshot.storage_options),
    )


def _typed_scan(
    snapshot: DeltaSnapshot, file: DeltaFile, columns: Sequence[str] | None
) -> pl.LazyFrame:
    """`file`'s `columns` (default: all) as a lazy scan in the table's types."""
    names = list(columns) if columns is not None else list(snapshot.column_names)
    frame = _scan(snapshot, file)
    stored = frame.collect_schema()
    exprs = []
    for name in names:
        column = snapshot.column(name)
        if column is None:
            raise KeyError(f"column {name} is not in Delta table {snapshot.table_uri}")
        if name in snapshot.partition_columns:
            value = file.partition_values.get(name)
            exprs.append(pl.lit(value, dtype=column.dtype).alias(name))
        elif name in stored:
            expr = pl.col(name)
            exprs.append(expr if stored[name] == column.dtype else expr.cast(column.dtype))
        else:
            exprs.append(pl.lit(None, dtype=column.dtype).alias(name))
    return frame.select(exprs)


def deleted_keys(
    path: str,
    key: Sequence[str],
    starting_version: int,
    ending_version: int,
    storage_options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Keys the change data feed deletes in [starting_version, ending_version] for good.

    A key counts as deleted when its last delete is later than its last insert or update
    post-image; at the same commit version the insert wins (a MERGE or overwrite that
    deletes and re-adds a key in one commit leaves it in the table).
    """
    table = DeltaTable(path, version=ending_version, storage_options=_options(storage_options))
    reader = table.load_cdf(
        starting_version=starting_version,
        ending_version=ending_version,
        columns=[*key, CHANGE_TYPE, COMMIT_VERSION],
    )
    change = pl.col(CHANGE_TYPE)
    parts = [
        pl.DataFrame(batch).filter(change.is_in(["delete", *PRESENT_AFTER])) for batch in reader
    ]
    if not parts:
        return pl.DataFrame(schema={k: table_dtype(table, k) for k in key})
    changes = pl.concat(parts)
    version = pl.col(COMMIT_VERSION)
    last = changes.group_by(list(key)).agg(
        version.filter(change == "delete").max().alias("deleted_at"),
        version.filter(change.is_in(PRESENT_AFTER)).max().alias("present_at"),
    )
    gone = pl.col("deleted_at").is_not_null() & (
        pl.col("present_at").is_null() | (pl.col("deleted_at") > pl.col("present_at"))
    )
    return last.filter(gone).select(list(key))


def table_dtype(table: DeltaTable, name: str) -> pl.DataType:
    return pl.DataFrame(Table.from_batches([], schema=table.schema().to_arrow())).schema[name]

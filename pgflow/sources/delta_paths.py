"""Data file locations of a Delta table that polars can open, whatever the table's path holds.

deltalake (1.6) lists a local table's files (`DeltaTable.file_uris()`) as the table's
percent-encoded root followed by the file's real relative path: the table at
`/lake/my tables/Orders ü` gives `/lake/my%20tables/Orders%20%C3%BC/part-0.parquet`. polars
opens that as a plain file name and finds nothing (pola-rs/polars#20944); `pl.scan_delta` of the
path, of a `DeltaTable` or of a `file://` URI all fail alike. The real root is put back here,
and every polars read of a Delta table goes through this module: `scan_delta` (the whole table as
a LazyFrame) and `file_uris` (file by file, the Delta -> Postgres sync). Object stores
(`s3://...`) are the same: deltalake stores the keys under their real names and lists them
under the encoded root.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from deltalake import DeltaTable

if TYPE_CHECKING:
    from deltalake.table import FilePruningPredicateType, FilterType

_FILE = "file://"


def scan_delta(
    path: str | Path,
    storage_options: Mapping[str, str] | None = None,
    *,
    version: int | None = None,
) -> pl.LazyFrame:
    """The table at `path` (at `version`, default the latest when called) as a LazyFrame.

    The table's log is read now (the version is pinned); its data only when collected. The
    storage options reach both deltalake and polars' Parquet reads (`pl.scan_delta` passes a
    table's options on).
    """
    options = dict(storage_options) if storage_options else None
    table = _ReadableTable(str(path), version=version, storage_options=options)
    _refuse_moved_deletion_vectors(table)
    return pl.scan_delta(table)


def file_uris(table: DeltaTable) -> list[str]:
    """`table.file_uris()` (same order) with a local table's real root."""
    return _real_root(table.table_uri, DeltaTable.file_uris(table))


class _ReadableTable(DeltaTable):
    """A DeltaTable whose `file_uris()` polars can open: `pl.scan_delta` lists the files it
    reads through that method."""

    def file_uris(
        self,
        partition_filters: FilterType | None = None,
        *,
        file_pruning_predicate: FilePruningPredicateType | None = None,
    ) -> list[str]:
        uris = super().file_uris(partition_filters, file_pruning_predicate=file_pruning_predicate)
        return _real_root(self.table_uri, uris)


def _encoded_root(table_uri: str) -> str | None:
    """The table's root as deltalake writes it in file URIs (a local table's without its
    file:// scheme); None when the URI is not one."""
    if table_uri.startswith(_FILE):
        root = table_uri.removeprefix(_FILE)
    elif "://" in table_uri:  # an object store: the keys hold the real names too
        root = table_uri
    else:
        return None
    return root if root.endswith("/") else root + "/"


def _real_root(table_uri: str, uris: list[str]) -> list[str]:
    encoded = _encoded_root(table_uri)
    if encoded is None:
        return uris
    real = urllib.parse.unquote(encoded)
    if real == encoded:
        return uris
    return [real + uri[len(encoded) :] if uri.startswith(encoded) else uri for uri in uris]


def _refuse_moved_deletion_vectors(table: DeltaTable) -> None:
    """polars matches deletion vectors to files by deltalake's URIs, which name the encoded
    root: with the real root in their place it would match none and return deleted rows."""
    encoded = _encoded_root(table.table_uri)
    if encoded is None or urllib.parse.unquote(encoded) == encoded:
        return
    if "deletionVectors" not in (table.protocol().reader_features or []):
        return
    if pl.DataFrame(table.deletion_vectors()).height:
        raise ValueError(
            f"Delta table {urllib.parse.unquote(table.table_uri)} has deletion vectors and a path "
            f"with characters that need encoding (spaces, non-ASCII letters); polars cannot read "
            f"that combination correctly. Purge the deletion vectors or move the table"
        )

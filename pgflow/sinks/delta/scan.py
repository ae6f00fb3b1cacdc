"""Delta tables as polars LazyFrames, for downstream assets: nothing is read until collected."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def scan_delta_table(
    path: str | Path,
    storage_options: dict[str, str] | None = None,
    *,
    version: int | None = None,
) -> pl.LazyFrame:
    """The table at `path` (at `version`, default the latest) as a LazyFrame.

    polars pushes projections and filters down to the Parquet files (and prunes files by
    partition values and statistics), so a downstream asset reads only what it selects.
    """
    return pl.scan_delta(str(path), version=version, storage_options=storage_options)

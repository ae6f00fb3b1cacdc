"""Delta tables as polars LazyFrames, for downstream assets: nothing is read until collected."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pgflow.sources.delta_paths import scan_delta


def scan_delta_table(
    path: str | Path,
    storage_options: dict[str, str] | None = None,
    *,
    version: int | None = None,
) -> pl.LazyFrame:
    """The table at `path` (at `version`, default the latest) as a LazyFrame.

    polars pushes projections and filters down to the Parquet files (and prunes files by
    partition values and statistics), so a downstream asset reads only what it selects. The
    table's log is read here, so the version is the one current now, not at collect time;
    local paths with spaces or non-ASCII letters are read (sources/delta_paths.py).
    """
    return scan_delta(path, storage_options, version=version)

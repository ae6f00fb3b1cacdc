"""The pass's rows as sink batches: Delta files read in batches of DELTA_CLIENT_BATCH_SIZE
rows (polars), re-cut into batches of POSTGRES_CLIENT_BATCH_SIZE rows, each with the position
after it, its keys checked and its COPY text rendered.

Files go in the plan's order (sorted by path) and rows in file order, so a position
(file, row) names the same rows on every attempt (the package docstring: exactly-once).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import polars as pl

from pgflow.flows.delta_sync.errors import DeltaSyncError, DuplicateKeyError
from pgflow.flows.delta_sync.plan import Plan
from pgflow.flows.delta_sync.settings import SyncSettings
from pgflow.sinks.postgres.delta_types import copy_text
from pgflow.sources import delta

# A sink batch: its rows, and (file, row) of the next row to apply after it.
Batch = tuple[pl.DataFrame, int, int]
# The same with the rows' COPY text, ready for the sink.
RenderedBatch = tuple[pl.DataFrame, bytes, int, int]


def rendered(
    plan: Plan, settings: SyncSettings, key: Sequence[str], start_file: int, start_row: int
) -> Iterator[RenderedBatch]:
    """batches() with each batch's keys checked and its COPY text rendered."""
    for frame, next_file, next_row in batches(plan, settings, start_file, start_row):
        check_keys(frame, key, plan.snapshot.table_uri)
        yield frame, copy_text(frame), next_file, next_row


def batches(plan: Plan, settings: SyncSettings, start_file: int, start_row: int) -> Iterator[Batch]:
    """Sink batches from (start_file, start_row) on, each with the position after it.

    A batch may span files; the position after it is (file, row) of the next row to apply,
    (file + 1, 0) when it ends a file.
    """
    size = settings.postgres_batch_size
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    for index in range(start_file, len(plan.files)):
        row = start_row if index == start_file else 0
        for chunk, last in file_chunks(plan.snapshot, plan.files[index], row, settings):
            taken = 0
            while taken < chunk.height:
                piece = chunk.slice(taken, size - pending_rows)
                taken += piece.height
                row += piece.height
                pending.append(piece)
                pending_rows += piece.height
                if pending_rows == size:
                    if last and taken == chunk.height:
                        yield _concat(pending), index + 1, 0
                    else:
                        yield _concat(pending), index, row
                    pending, pending_rows = [], 0
    if pending:
        yield _concat(pending), len(plan.files), 0


def file_chunks(
    snapshot: delta.DeltaSnapshot, file: delta.DeltaFile, offset: int, settings: SyncSettings
) -> Iterator[tuple[pl.DataFrame, bool]]:
    """The file's Delta batches from row `offset`, each flagged True when it is the last.

    The file's row count says which batch is the last: reading the next batch ahead to
    find out would hold two batches in memory."""
    rows = delta.file_rows(snapshot, file)
    row = offset
    for chunk in delta.read_batches(snapshot, file, settings.delta_batch_size, offset=offset):
        row += chunk.height
        yield chunk, row >= rows


def check_keys(frame: pl.DataFrame, key: Sequence[str], table_uri: str) -> None:
    nulls = frame.select(pl.any_horizontal(pl.col(k).is_null() for k in key).sum()).item()
    if nulls:
        raise DeltaSyncError(
            f"{nulls} row(s) of Delta table {table_uri} have a NULL in the key "
            f"({', '.join(key)}); a key must identify a row"
        )


def duplicate_error(frame: pl.DataFrame, key: Sequence[str], table_uri: str) -> DuplicateKeyError:
    repeated = frame.group_by(list(key)).len().filter(pl.col("len") > 1).head(5).iter_rows()
    sample = ", ".join(f"{row[:-1]} x{row[-1]}" for row in repeated)
    return DuplicateKeyError(
        f"Delta table {table_uri} repeats the key ({', '.join(key)}) "
        f"within one batch, e.g. {sample}: the sync cannot tell which row is current. "
        f"Deduplicate the Delta table"
    )


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)

"""The CDC-into-Delta bench's measured calls (bench/cdc_delta.py), each in a subprocess of its
own, and the check of a Delta table against its source.

`python -m bench.cdc_delta_measure SETTINGS` runs one of:
- "cdc": one replicate() call of a lone pipeline, into Delta (a DeltaCdcTarget, its changes
  typed on the source) or into Postgres (a CdcTarget), with its peak RSS (VmHWM, reset just
  before the call), CPU, and where its time went: the applier's call per batch ("apply
  alone"), of which the Delta merge (delta-rs `TableMerger.execute`) and Delta writes, the SQL
  of the applying thread (the Delta member's typing of its changes on the source) and of the
  reading thread (staging), the replication stream, decoding (bench/cdc_measure.instrument);
- "maintain": the Delta table's maintenance (pgflow.flows.delta_maintenance.maintain), with
  the table's files before and after.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import deltalake
import polars as pl
import psycopg
from deltalake import DeltaTable
from deltalake.table import TableMerger

from bench.cdc_measure import Timers, breakdown, connector, instrument, measuring, profile_text
from bench.cdc_measure import strategy as merge_strategy
from pgflow.config.model import DeltaMaintenance, StrategySpec, TableName
from pgflow.flows.cdc.model import CdcSettings, CdcTarget, DeltaCdcTarget
from pgflow.flows.cdc.run import replicate
from pgflow.sources.arrow import ArrowRead

COLUMNS = (
    "id",
    "customer_id",
    "status",
    "amount",
    "note",
    "tags",
    "attrs",
    "created_at",
    "updated_at",
    "paid",
    "ref",
)
# What a user would schedule after a day of batches: compaction, every unreferenced file
# vacuumed (retention 0, the bench's table has no readers), a checkpoint.
MAINTENANCE = DeltaMaintenance(
    vacuum_retention=timedelta(0), allow_short_retention=True, checkpoint=True
)


# -- the check: a Delta table against its Postgres source ----------------------------------------

# Every column as the same text on both sides: the source renders it in SQL, the Delta table's
# Arrow values are cast in polars (timestamps as epoch microseconds, arrays joined, booleans
# as 0/1); then one hash per row, compared row by row on the key.
SOURCE_TEXT = """COPY (SELECT id, customer_id::text, status, amount::text, note,
    array_to_string(tags, ','), attrs::text,
    (extract(epoch FROM created_at) * 1000000)::bigint::text,
    (extract(epoch FROM updated_at) * 1000000)::bigint::text, paid::int::text, ref::text
  FROM {}) TO STDOUT (FORMAT csv)"""
TEXT_COLUMNS = COLUMNS[1:]


def _row_hashes(frame: pl.DataFrame) -> pl.DataFrame:
    texts = [pl.col(c).fill_null("\\N") for c in TEXT_COLUMNS]
    return frame.select("id", h=pl.concat_str(texts, separator="|").hash(seed=0))


def source_rows(uri: str, table: str) -> pl.DataFrame:
    """The source's rows as (id, hash of the other columns' text)."""
    buffer = io.BytesIO()
    with psycopg.connect(uri) as conn, conn.cursor().copy(SOURCE_TEXT.format(table)) as copy:
        for data in copy:
            buffer.write(data)
    buffer.seek(0)
    schema = {"id": pl.Int64, **dict.fromkeys(TEXT_COLUMNS, pl.String)}
    return _row_hashes(pl.read_csv(buffer, has_header=False, schema=schema))


def delta_rows(path: str) -> pl.DataFrame:
    """The Delta table's current version, as source_rows renders the source."""
    frame = pl.read_delta(path, columns=list(COLUMNS))
    as_text = {
        "customer_id": pl.col("customer_id").cast(pl.String),
        "amount": pl.col("amount").cast(pl.String),
        "tags": pl.col("tags").list.join(","),
        "created_at": pl.col("created_at").dt.epoch("us").cast(pl.String),
        "updated_at": pl.col("updated_at").dt.epoch("us").cast(pl.String),
        "paid": pl.col("paid").cast(pl.Int8).cast(pl.String),
    }
    return _row_hashes(frame.with_columns(**as_text))


def compare(source: pl.DataFrame, delta: pl.DataFrame) -> dict[str, int]:
    """Rows on each side, and keys whose row differs or is on one side only."""
    joined = source.join(delta, on="id", how="full", coalesce=True, suffix="_delta")
    differ = joined.filter(pl.col("h").ne_missing(pl.col("h_delta"))).height
    return {"source_rows": source.height, "delta_rows": delta.height, "differing": differ}


def files(path: str) -> dict[str, int]:
    """The Delta table's data files: those its current version references, those on disk
    (removed ones included until a vacuum deletes them), and its log's commits."""
    from pathlib import Path

    folder = Path(path)
    return {
        "active": len(DeltaTable(path).file_uris()),
        "on_disk": sum(1 for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts),
        "log_entries": sum(1 for _ in (folder / "_delta_log").glob("*.json")),
    }


# -- the measured calls ---------------------------------------------------------------------------


# delta-rs's merge metrics, summed over the call: what the merge read and rewrote.
MERGE_METRICS = (
    "num_source_rows",
    "num_target_rows_copied",
    "num_target_files_added",
    "num_target_files_removed",
)


def _timed_apply(timers: Timers, merged: dict[str, int]) -> None:
    """The Delta merge (and its metrics) and writes: seconds each (instrument times the
    applier's calls)."""
    execute = timers.timed_call("merge", TableMerger.execute)

    def merge(self: TableMerger) -> Any:
        metrics = execute(self)
        for name in MERGE_METRICS:
            merged[name] = merged.get(name, 0) + int(metrics.get(name, 0))
        return metrics

    TableMerger.execute = merge  # type: ignore[method-assign]
    batches = ArrowRead.record_batches

    def timed_batches(self: ArrowRead, *args: Any, **kwargs: Any) -> Any:
        return timers.timed_iterator("arrow_read", batches(self, *args, **kwargs))

    ArrowRead.record_batches = timed_batches  # type: ignore[method-assign]
    original = deltalake.write_deltalake
    timed_write = timers.timed_call("write", original)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("pgflow.") and (
            getattr(module, "write_deltalake", None) is original
        ):
            module.write_deltalake = timed_write  # type: ignore[attr-defined]


def target_of(settings: dict[str, Any]) -> tuple[Any, Callable[..., Any]]:
    """The pipeline's target and how its member connects: Delta's to the source."""
    if settings["sink"] == "delta":
        strategy = StrategySpec(mode="incremental_merge", unique_key=("id",))
        return DeltaCdcTarget(settings["path"], strategy), connector(settings["source"])
    target = CdcTarget(TableName(*settings["target"]), merge_strategy(settings["policy"]))
    return target, connector(settings["sink_uri"])


def measured_cdc(settings: dict[str, Any]) -> dict[str, Any]:
    timers = Timers()
    instrument(timers)
    merged: dict[str, int] = {}
    _timed_apply(timers, merged)
    target, connect_sink = target_of(settings)
    cdc_settings = CdcSettings(slot=settings["slot"], publication=settings["slot"])
    profile = None
    if settings["profile"]:
        import cProfile

        profile = cProfile.Profile()
    with measuring(settings, profile) as figures:
        result = replicate(
            connector(settings["source"]),
            connect_sink,
            TableName("public", settings["table"]),
            target,
            cdc_settings,
            pipeline=settings["slot"],
        )
    seconds = timers.seconds
    return {
        **figures,
        "snapshot": result.snapshot is not None,
        "changes": result.changes,
        "batches": len(result.batches),
        "rows_applied": result.rows_applied,
        "apply_s": seconds["apply"],
        "merge_s": seconds["merge"],
        "write_s": seconds["write"],
        "arrow_read_s": seconds["arrow_read"],
        "merge_metrics": merged,  # the typed changes read, inside the merge
        "parts": breakdown(figures["wall"], seconds),
        "statements": dict(timers.statements),
        "profile": profile_text(profile),
    }


def measured_maintain(settings: dict[str, Any]) -> dict[str, Any]:
    from pgflow.flows.delta_maintenance import maintain

    before = files(settings["path"])
    with measuring(settings, None) as figures:
        outcome = maintain(settings["path"], None, MAINTENANCE)
    return {
        **figures,
        "files_before": before,
        "files_after": files(settings["path"]),
        "result": dataclasses.asdict(outcome),
    }


MEASURES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "cdc": measured_cdc,
    "maintain": measured_maintain,
}


if __name__ == "__main__":
    chosen = json.loads(sys.argv[1])
    print(json.dumps(MEASURES[chosen["kind"]](chosen)))

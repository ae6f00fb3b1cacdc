"""sink.options: settings of how a sink writes values, checked against the sink's type; and
the strategy settings that only some modes take."""

from __future__ import annotations

from pgflow.config.model import (
    NUMERIC_AS,
    PARTITION_INTERVALS,
    NumericAs,
    PartitionInterval,
    SinkSpec,
    SourceSpec,
    StrategySpec,
)
from pgflow.config.reader import Report, Section

# Modes whose load can create the partitions its staged values need (create_partitions).
CREATE_PARTITIONS_MODES = ("partition_replace", "incremental_append", "incremental_merge")


def read_sink_options(options: Section | None, kind: str | None) -> NumericAs:
    """`numeric_as` (Delta sinks): unconstrained numerics as exact decimals or as their text."""
    if options is None:
        return "decimal"
    numeric_as = options.choice("numeric_as", NUMERIC_AS, default="decimal")
    if kind == "postgres" and numeric_as != "decimal":
        options.problem(
            "numeric_as",
            "applies to Delta sinks only (a Postgres target keeps numeric as numeric); remove it",
        )
    options.finish()
    return numeric_as


def read_partition_creation(strategy: Section) -> tuple[bool, PartitionInterval | None]:
    """`create_partitions` and `partition_interval` of `sink.strategy`; their combination with
    the mode and sink type is checked in semantics.py."""
    create = strategy.flag("create_partitions")
    text = strategy.text("partition_interval", choices=PARTITION_INTERVALS)
    interval = next((i for i in PARTITION_INTERVALS if i == text), None)
    if interval is not None and not create:
        strategy.problem(
            "partition_interval",
            "applies only with create_partitions: true (it is the width of the partitions "
            "the load creates); add create_partitions: true or remove it",
        )
        interval = None
    return create, interval


def check_partition_creation(source: SourceSpec, sink: SinkSpec, report: Report) -> None:
    """create_partitions needs a Postgres sink whose load stages rows and applies them in
    one transaction: partition_replace, incremental_append, or incremental_merge with
    delete_insert or upsert, from a table read (CDC and Delta syncs apply changes otherwise)."""
    strategy = sink.strategy
    if not strategy.create_partitions:
        return
    field = "sink.strategy.create_partitions"
    if sink.type != "postgres":
        report(field, "applies to postgres sinks only (a Delta table has no partitions to create)")
    elif strategy.mode not in CREATE_PARTITIONS_MODES:
        report(field, f"applies to modes {', '.join(CREATE_PARTITIONS_MODES)}; remove it")
    elif strategy.merge_policy == "shadow_swap" and strategy.mode == "incremental_merge":
        report(
            field,
            "does not apply to merge_policy shadow_swap (it swaps in a new table); use "
            "delete_insert or upsert",
        )
    elif source.type != "postgres" or source.options.incremental_strategy == "cdc":
        report(
            field,
            "applies to loads of a postgres table read (full, column or xmin), not to CDC "
            "or Delta syncs; create the partitions beforehand",
        )


def check_mode_options(s: Section, strategy: StrategySpec) -> None:
    """`on_unmatched` (mode update) and `update_columns` (upsert) against the mode."""
    if s.has("on_unmatched") and strategy.mode != "update":
        s.problem(
            "on_unmatched",
            f"applies to mode update only (this strategy is {strategy.mode}): it decides what "
            "a staged key the target lacks does; remove it",
        )
    columns = strategy.update_columns
    if columns is None:
        return
    if strategy.mode != "incremental_merge" or strategy.merge_policy != "upsert":
        s.problem(
            "update_columns",
            f"applies to mode incremental_merge with merge_policy: upsert only (this strategy "
            f"is {strategy.key}): set merge_policy: upsert, or remove update_columns",
        )
        return
    keys = [c for c in columns if c in strategy.unique_key]
    if keys:
        s.problem(
            "update_columns",
            f"lists {', '.join(keys)} of the unique_key: a conflict means the key is already "
            "there, so it is never updated; remove it from update_columns",
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        s.problem("update_columns", f"lists {', '.join(repeated)} more than once")

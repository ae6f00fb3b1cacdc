"""Checks across the fields of one pipeline: each field is valid on its own, but together they
would lose or duplicate rows, or ask for something this sink or source cannot do."""

from __future__ import annotations

import re

from pgflow.config.bad_rows import check_bad_rows
from pgflow.config.model import (
    KEYED_CHANGE_MODES,
    PartitionsSpec,
    SinkSpec,
    SourceOptions,
    SourceSpec,
    StrategySpec,
)
from pgflow.config.read_query import check_query_source
from pgflow.config.reader import Report
from pgflow.config.sink_options import check_partition_creation
from pgflow.config.support import unsupported_reason

# Incremental reads re-read rows (the boundary value, the lookback window), so only sink
# strategies that match rows by key can take them without duplicating or losing rows.
_KEYED_FOR_INCREMENTAL = "incremental_merge, or incremental_append with only_new_rows: true"

# Options that mean something for one incremental strategy only (None when not given).
_STRATEGY_ONLY = {
    "incremental_column": "column",
    "lookback": "column",
    "slot_name": "cdc",
    "publication_name": "cdc",
    "deleted_column": "cdc",
    "target_batch_size": "cdc",
    "max_changes_per_run": "cdc",
}

_REPLICATION_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def check_pipeline(
    source: SourceSpec, sink: SinkSpec, partitions: PartitionsSpec | None, report: Report
) -> None:
    """Report every combination of fields that cannot work; each field was read already."""
    _check_strategy(sink, report)
    check_partition_creation(source, sink, report)
    check_bad_rows(source, sink, report)
    _check_source(source, sink, report)
    check_query_source(source, sink, report)
    if source.options.include_columns is not None:
        _check_include_columns(source, sink, report)
    if sink.strategy.update_columns is not None:
        _check_update_columns(source, sink, report)
    reason = unsupported_reason(source, sink)
    if reason:
        report(*reason)
    if partitions is not None:
        _check_partitions(source, sink, report)


def _check_strategy(sink: SinkSpec, report: Report) -> None:
    """What the sink strategy's mode needs, and settings that apply to other sinks only."""
    strategy = sink.strategy
    if strategy.mode == "incremental_merge" and not strategy.unique_key:
        report(
            "sink.strategy.unique_key",
            "is required for mode incremental_merge: list the key column(s), e.g. [id]",
        )
    if strategy.mode in KEYED_CHANGE_MODES and not strategy.unique_key:
        report(
            "sink.strategy.unique_key",
            f"is required for mode {strategy.mode}: it finds the target rows to "
            f"{strategy.mode}; list the key column(s), e.g. [id]",
        )
    if strategy.only_new_rows and not strategy.unique_key:
        report(
            "sink.strategy.unique_key",
            "is required with only_new_rows: true (it decides which rows are new)",
        )
    if sink.type == "delta" and strategy.fillfactor is not None:
        report(
            "sink.strategy.fillfactor",
            "applies to postgres sinks only (a Delta table's Parquet files have no free space "
            "to tune); remove it",
        )
    if strategy.parallelism > 1 and (
        sink.type != "postgres" or strategy.mode != "full_refresh" or strategy.method != "exchange"
    ):
        report(
            "sink.strategy.parallelism",
            "applies to postgres sinks with mode full_refresh and method exchange (the only "
            "load whose new table can be filled by several connections before one swap); "
            "remove it or use method: exchange",
        )
    if strategy.mode == "replace" and not strategy.custom_predicate:
        report(
            "sink.strategy.custom_predicate",
            "is required for mode replace: a SQL condition on the target, e.g. \"order_date >= '2026-01-01'\"",
        )
    if strategy.mode == "partition_replace" and not strategy.partition_column:
        report(
            "sink.strategy.partition_column",
            "is required for mode partition_replace: the column that decides each row's partition",
        )


def _check_update_columns(source: SourceSpec, sink: SinkSpec, report: Report) -> None:
    """A partial upsert is the staged load's ON CONFLICT: paths that merge otherwise (a Delta
    merge, CDC's apply, the Delta -> Postgres sync) would update every column."""
    if sink.type == "delta":
        why = "a Delta merge updates every column"
    elif source.type == "delta":
        why = "a Delta -> Postgres sync updates every column"
    elif source.options.incremental_strategy == "cdc":
        why = "CDC applies every changed column"
    else:
        return
    report(
        "sink.strategy.update_columns",
        f"applies to postgres sinks loaded from a postgres table (not CDC) for now ({why}); "
        "remove it",
    )


def _check_source(source: SourceSpec, sink: SinkSpec, report: Report) -> None:
    """The source options against the source type and the sink strategy."""
    options = source.options
    if options.incremental_strategy == "column" and not options.incremental_column:
        report(
            "source.options.incremental_column",
            "is required with incremental_strategy: column: name the cursor column, e.g. updated_at",
        )
    if source.type == "postgres":
        _check_incremental_read(options, sink.strategy, sink.type, report)
    if source.type == "delta":
        _check_delta_source(options, sink, report)
    elif options.deletes != "none":
        report(
            "source.options.deletes",
            "applies to delta sources only; a postgres source's deletes reach the target "
            "through CDC (incremental_strategy: cdc) or a reset",
        )


def _check_delta_source(options: SourceOptions, sink: SinkSpec, report: Report) -> None:
    if options.incremental_strategy != "full":
        report(
            "source.options.incremental_strategy",
            "applies to postgres sources only; a delta source is read by table version",
        )
    if sink.type != "postgres" or sink.strategy.mode != "incremental_merge":
        report(
            "sink.strategy.mode",
            "a delta source is synced into Postgres by key (hash-diff upsert): use a postgres "
            "sink with mode incremental_merge and unique_key",
        )


def _check_incremental_read(
    options: SourceOptions, strategy: StrategySpec, sink_type: str, report: Report
) -> None:
    kind = options.incremental_strategy
    _check_strategy_only_options(options, report)
    if kind == "cdc":
        _check_replication_names(options, report)
    if kind == "full":
        return
    if kind == "cdc" and sink_type == "delta":
        _check_delta_cdc(strategy, report)
        return
    if strategy.mode in KEYED_CHANGE_MODES:
        if kind == "cdc":
            report(
                "sink.strategy.mode",
                f"{strategy.mode} cannot take CDC (incremental_strategy: cdc): a change stream "
                "applies inserts, updates and deletes itself; use mode incremental_merge, or "
                "incremental_strategy: column or xmin",
            )
        return
    if strategy.mode == "incremental_append" and not strategy.only_new_rows:
        why = (
            "an update would be appended as a second row"
            if kind == "cdc"
            else "each run re-reads the rows at its starting point, which a plain append "
            "would insert twice"
        )
        report(
            "sink.strategy.only_new_rows",
            f"must be true with incremental_strategy: {kind}: {why}; or use mode incremental_merge",
        )
    elif strategy.mode not in ("incremental_append", "incremental_merge"):
        report(
            "sink.strategy.mode",
            f"{strategy.mode} cannot take an incremental read (incremental_strategy: {kind}): "
            "the read holds only the changed rows, and this mode would drop the rest; use "
            f"{_KEYED_FOR_INCREMENTAL}, or incremental_strategy: full",
        )


def _check_delta_cdc(strategy: StrategySpec, report: Report) -> None:
    """CDC into Delta applies each batch as ONE merge on the key; nothing else keeps the table
    equal to the source (an append would add every update as a second row)."""
    if strategy.mode != "incremental_merge":
        report(
            "sink.strategy.mode",
            f"{strategy.mode} cannot take CDC into a delta sink: each batch is one Delta merge "
            "on the key (updates, inserts, deletes); use mode incremental_merge with "
            "unique_key (the source table's primary key)",
        )


def _check_strategy_only_options(options: SourceOptions, report: Report) -> None:
    kind = options.incremental_strategy
    given = [name for name in _STRATEGY_ONLY if getattr(options, name) is not None]
    if options.auto_cleanup:
        given.append("auto_cleanup")
    for name in given:
        owner = _STRATEGY_ONLY.get(name, "cdc")
        if owner != kind:
            report(
                f"source.options.{name}",
                f"applies to incremental_strategy: {owner} only (this source is {kind}); "
                f"remove it or set incremental_strategy: {owner}",
            )


def _check_replication_names(options: SourceOptions, report: Report) -> None:
    for name in ("slot_name", "publication_name"):
        value = getattr(options, name)
        if value is not None and not _REPLICATION_NAME.match(value):
            report(
                f"source.options.{name}",
                f"'{value}' must be 1 to 63 lower-case letters, digits or _ (a replication "
                "slot name's rule)",
            )


def _check_include_columns(source: SourceSpec, sink: SinkSpec, report: Report) -> None:
    """The columns a load needs must be among those it reads; pgflow's own must not."""
    field = "source.options.include_columns"
    options, strategy = source.options, sink.strategy
    included = options.include_columns or ()
    if source.type != "postgres":
        report(field, "applies to postgres sources only; remove it")
        return
    repeated = sorted({c for c in included if included.count(c) > 1})
    if repeated:
        report(field, f"lists {_quoted(repeated)} more than once; name each column once")
    needed = [
        ("sink.strategy.unique_key", strategy.unique_key),
        ("source.options.incremental_column", (options.incremental_column or "",)),
        ("sink.strategy.partition_column", (strategy.partition_column or "",)),
    ]
    for owner, columns in needed:
        left_out = [c for c in columns if c and c not in included]
        if left_out:
            report(
                field,
                f"leaves out {_quoted(left_out)} of {owner}, which the load needs in the "
                "target: add it to include_columns",
            )
    if strategy.mode == "delete":
        allowed = (*strategy.unique_key, options.incremental_column)
        extra = [c for c in included if c not in allowed]
        if extra:
            report(
                field,
                f"lists {_quoted(extra)}: delete reads only the key (unique_key, and the "
                "incremental_column of a column cursor); remove the other columns",
            )
    if options.deleted_column in included:
        report(
            field,
            f"lists '{options.deleted_column}', the source.options.deleted_column pgflow adds "
            "to the target for soft deletes; remove it from include_columns, or choose another "
            "deleted_column",
        )


def _quoted(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _check_partitions(source: SourceSpec, sink: SinkSpec, report: Report) -> None:
    strategy = sink.strategy
    if strategy.mode != "partition_replace":
        report(
            "partitions",
            f"time partitions need sink.strategy.mode partition_replace (this pipeline uses "
            f"{strategy.mode}): each Dagster partition replaces its slice of partition_column",
        )
    if source.type != "postgres":
        report("partitions", "time partitions need a postgres source")

"""The `sink:` of a pipeline: where rows are written, and the `strategy:` of how."""

from __future__ import annotations

from pgflow.config.bad_rows import BAD_ROW_POLICIES, read_max_rejected
from pgflow.config.identifiers import read_identifier, read_identifiers
from pgflow.config.model import (
    DUPLICATE_POLICIES,
    FULL_REFRESH_METHODS,
    MERGE_POLICIES,
    NATIVE_MODES,
    SCHEMA_CHANGE_POLICIES,
    SINK_MODES,
    UNMATCHED_POLICIES,
    SinkSpec,
    StrategySpec,
    TableName,
)
from pgflow.config.read_endpoint import read_endpoint, read_table
from pgflow.config.read_maintenance import read_maintenance
from pgflow.config.reader import Section
from pgflow.config.sink_options import (
    check_mode_options,
    read_partition_creation,
    read_sink_options,
)

# Schemas a sink must not write into: Postgres' own, and pgflow's state (`_pgflow`).
_RESERVED_SINK_SCHEMAS = ("_pgflow", "information_schema")
MAX_PARALLELISM = 32


def read_sink(section: Section | None) -> SinkSpec | None:
    if section is None:
        return None
    endpoint = read_endpoint(section)
    table = _read_target_table(section, required=endpoint.type == "postgres")
    strategy_section = section.section("strategy", required=True)
    strategy = read_strategy(strategy_section) if strategy_section else None
    options = section.section("options")
    maintenance = read_maintenance(options, endpoint.type)  # before options.finish()
    numeric_as = read_sink_options(options, endpoint.type)
    section.finish()
    if endpoint.type is None or strategy is None:
        return None
    return SinkSpec(
        endpoint.type,
        endpoint.connection_id,
        endpoint.connection_type,
        table,
        strategy,
        endpoint.path,
        numeric_as,
        maintenance,
    )


def _read_target_table(section: Section, required: bool) -> TableName | None:
    table = read_table(section, required=required)
    if table is not None and _reserved_schema(table.schema):
        section.problem(
            "table.schema",
            f"'{table.schema}' is reserved (Postgres' own schemas, pgflow's state in _pgflow); "
            "write the target into a schema of your own, e.g. landing",
        )
        return None
    return table


def _reserved_schema(schema: str) -> bool:
    lowered = schema.lower()
    return lowered in _RESERVED_SINK_SCHEMAS or lowered.startswith("pg_")


def read_strategy(s: Section) -> StrategySpec | None:
    """`strategy:`; None when `mode` is missing or not allowed (reported)."""
    mode = s.choice("mode", SINK_MODES, required=True)
    create_partitions, partition_interval = read_partition_creation(s)
    strategy = StrategySpec(
        mode=mode or "full_refresh",
        method=s.choice("method", FULL_REFRESH_METHODS, default="truncate_insert"),
        unique_key=read_identifiers(s, "unique_key") or (),
        merge_policy=s.choice("merge_policy", MERGE_POLICIES, default="delete_insert"),
        duplicate_policy=s.choice("duplicate_policy", DUPLICATE_POLICIES, default="fail"),
        only_new_rows=s.flag("only_new_rows"),
        custom_predicate=s.text("custom_predicate"),
        partition_column=read_identifier(s, "partition_column"),
        native_mode=s.choice("native_mode", NATIVE_MODES, default="auto"),
        on_schema_change=s.choice(
            "on_schema_change", SCHEMA_CHANGE_POLICIES, default="add_columns"
        ),
        fillfactor=_read_fillfactor(s),
        parallelism=_read_parallelism(s),
        create_partitions=create_partitions,
        partition_interval=partition_interval,
        on_unmatched=s.choice("on_unmatched", UNMATCHED_POLICIES, default="ignore"),
        update_columns=read_identifiers(s, "update_columns"),
        on_bad_rows=s.choice("on_bad_rows", BAD_ROW_POLICIES, default="fail"),
        max_rejected=read_max_rejected(s),
    )
    if mode:
        check_mode_options(s, strategy)
    s.finish()
    return strategy if mode else None


def _read_parallelism(s: Section) -> int:
    value = s.positive_int("parallelism")
    if value is not None and value > MAX_PARALLELISM:
        s.problem(
            "parallelism",
            f"must be at most {MAX_PARALLELISM} (each stream holds a source and a sink "
            f"connection), got {value}; about one stream per sink CPU is enough",
        )
        return 1
    return value or 1


def _read_fillfactor(s: Section) -> int | None:
    value = s.positive_int("fillfactor")
    if value is not None and not 10 <= value <= 100:
        s.problem(
            "fillfactor",
            f"must be a percentage from 10 to 100 (Postgres' range), got {value}; 90 leaves "
            "room for updated rows",
        )
        return None
    return value

"""The `source:` of a pipeline: where rows are read, and `options:` of how they are read."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from pgflow.config.durations import parse_duration
from pgflow.config.identifiers import read_identifier, read_identifiers
from pgflow.config.model import (
    DELTA_DELETES,
    INCREMENTAL_STRATEGIES,
    NULL_CURSOR_POLICIES,
    SNAPSHOT_MODES,
    TRUNCATE_POLICIES,
    SourceOptions,
    SourceSpec,
)
from pgflow.config.read_endpoint import read_endpoint, read_table
from pgflow.config.read_query import read_query
from pgflow.config.reader import Section


def read_source(section: Section | None) -> SourceSpec | None:
    if section is None:
        return None
    endpoint = read_endpoint(section)
    query = read_query(section, endpoint.type)
    neither = endpoint.type == "postgres" and not section.has("query")
    if neither and not section.has("table"):
        section.problem("table", "is required (a mapping), or give source.query (one SELECT)")
    table = read_table(section, required=False)
    options_section = section.section("options")
    options = read_source_options(options_section) if options_section else SourceOptions()
    section.finish()
    if endpoint.type is None:
        return None
    return SourceSpec(
        endpoint.type,
        endpoint.connection_id,
        endpoint.connection_type,
        table,
        endpoint.path,
        options,
        query,
    )


def read_source_options(o: Section) -> SourceOptions:
    options = SourceOptions(
        incremental_strategy=o.choice(
            "incremental_strategy", INCREMENTAL_STRATEGIES, default="full"
        ),
        incremental_column=read_identifier(o, "incremental_column"),
        lookback=_read_lookback(o),
        on_null_cursor=o.choice("on_null_cursor", NULL_CURSOR_POLICIES, default="exclude"),
        slot_name=o.text("slot_name"),
        publication_name=o.text("publication_name"),
        snapshot=o.choice("snapshot", SNAPSHOT_MODES, default="initial"),
        auto_cleanup=o.flag("auto_cleanup"),
        deleted_column=read_identifier(o, "deleted_column"),
        on_truncate=o.choice("on_truncate", TRUNCATE_POLICIES, default="apply"),
        target_batch_size=o.positive_int("target_batch_size"),
        max_changes_per_run=o.positive_int("max_changes_per_run"),
        include_columns=read_identifiers(o, "include_columns"),
        reset=o.flag("reset"),
        deletes=o.choice("deletes", DELTA_DELETES, default="none"),
    )
    o.finish()
    return options


def _read_lookback(o: Section) -> timedelta | Decimal | None:
    """A duration ('5 minutes') for date/time cursors, a number (100) for numeric ones."""
    raw = o.raw("lookback")
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if raw < 0 or not math.isfinite(raw):
            o.problem("lookback", f"{raw} must be a number of 0 or more")
            return None
        return Decimal(str(raw))
    try:
        return parse_duration(raw)
    except ValueError as exc:
        o.problem("lookback", str(exc))
        return None


def with_cdc_defaults(source: SourceSpec, pipeline: str) -> SourceSpec:
    """The slot named after the pipeline unless the spec names it (then `slot_named`).

    The publication's default is the slot's name, given to every pipeline of the slot once
    the whole project is read (`cdc_groups.with_group_publications`): one member may name it.
    """
    options = source.options
    if options.incremental_strategy != "cdc":
        return source
    named = replace(
        options,
        slot_name=options.slot_name or default_slot_name(pipeline),
        slot_named=options.slot_name is not None,
    )
    return replace(source, options=named)


def default_slot_name(pipeline: str) -> str:
    """The slot of a pipeline that names none: its own, `pgflow_<pipeline>`."""
    return f"pgflow_{pipeline.lower()}"[:63]

"""sink.options: settings of how a sink writes values, checked against the sink's type; and
the strategy settings that only some modes take."""

from __future__ import annotations

from pgflow.config.model import NUMERIC_AS, NumericAs, StrategySpec
from pgflow.config.reader import Section


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

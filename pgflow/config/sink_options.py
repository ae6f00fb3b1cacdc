"""sink.options: settings of how a sink writes values, checked against the sink's type."""

from __future__ import annotations

from pgflow.config.model import NUMERIC_AS, NumericAs
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

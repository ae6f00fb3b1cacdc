"""What this version of pgflow can run; everything else is valid YAML but refused at load.

Each later strategy flips its entry here when it lands, so users learn at load time, not in a
failed run, that a spec asks for something not built yet.
"""

from __future__ import annotations

from pgflow.config.model import SinkSpec, SourceSpec

SUPPORTED_SOURCES = {("postgres", "full")}
SUPPORTED_SINK_MODES = {("postgres", "full_refresh")}


def unsupported_reason(source: SourceSpec, sink: SinkSpec) -> tuple[str, str] | None:
    """(field, message) when the spec asks for a source or sink strategy not available yet."""
    strategy = source.options.incremental_strategy
    if (source.type, strategy) not in SUPPORTED_SOURCES:
        field = (
            "source.type" if source.type != "postgres" else "source.options.incremental_strategy"
        )
        return field, (
            f"{source.type} source with incremental_strategy '{strategy}' is not supported yet; "
            f"supported now: {_describe(SUPPORTED_SOURCES)}"
        )
    if (sink.type, sink.strategy.mode) not in SUPPORTED_SINK_MODES:
        field = "sink.type" if sink.type != "postgres" else "sink.strategy.mode"
        return field, (
            f"{sink.type} sink with mode '{sink.strategy.mode}' is not supported yet; "
            f"supported now: {_describe(SUPPORTED_SINK_MODES)}"
        )
    # Settings the runtime would otherwise ignore silently.
    if source.options.include_columns is not None:
        return "source.options.include_columns", (
            "is not supported yet; every column of the source table is copied, remove the key"
        )
    return None


def _describe(pairs: set[tuple[str, str]]) -> str:
    return ", ".join(f"{kind} {what}" for kind, what in sorted(pairs))

"""What this version of pgflow can run; everything else is valid YAML but refused at load.

Each strategy flips its entry here when it lands, so users learn at load time, not in a
failed run, that a spec asks for something not built yet.
"""

from __future__ import annotations

from pgflow.config.model import SinkSpec, SourceSpec

SUPPORTED_SOURCES = {
    ("postgres", "full"),
    ("postgres", "column"),
    ("postgres", "xmin"),
    ("postgres", "cdc"),
    ("delta", "full"),
}
# (sink type, mode, variant): the full_refresh method or the merge policy, else "".
SUPPORTED_SINK_STRATEGIES = {
    ("postgres", "full_refresh", "truncate_insert"),
    ("postgres", "full_refresh", "exchange"),
    ("postgres", "incremental_append", ""),
    ("postgres", "incremental_merge", "delete_insert"),
    ("postgres", "incremental_merge", "upsert"),
    ("postgres", "incremental_merge", "shadow_swap"),
    ("postgres", "replace", ""),
    ("postgres", "partition_replace", ""),
    ("postgres", "update", ""),
    ("postgres", "delete", ""),
    ("delta", "full_refresh", "truncate_insert"),
    ("delta", "incremental_append", ""),
    ("delta", "incremental_merge", "delete_insert"),  # one Delta merge, whatever the policy
    ("delta", "replace", ""),
    ("delta", "partition_replace", ""),
    ("delta", "update", ""),  # one Delta merge that never inserts
    ("delta", "delete", ""),
}


def unsupported_reason(source: SourceSpec, sink: SinkSpec) -> tuple[str, str] | None:
    """(field, message) when the spec asks for a source or sink strategy not available yet."""
    strategy = source.options.incremental_strategy
    if (source.type, strategy) not in SUPPORTED_SOURCES:
        field = (
            "source.type" if source.type != "postgres" else "source.options.incremental_strategy"
        )
        return field, (
            f"{source.type} source with incremental_strategy '{strategy}' is not supported yet; "
            f"supported now: {', '.join(f'{k} {s}' for k, s in sorted(SUPPORTED_SOURCES))}"
        )
    variant = sink.strategy.variant
    if (sink.type, sink.strategy.mode, variant) not in SUPPORTED_SINK_STRATEGIES:
        field = _unsupported_field(sink)
        described = f"mode '{sink.strategy.mode}'" + (f" ({variant})" if variant else "")
        return field, (
            f"{sink.type} sink with {described} is not supported yet; supported now: "
            f"{_describe_sinks()}"
        )
    return None


def _unsupported_field(sink: SinkSpec) -> str:
    if sink.type != "postgres":
        return "sink.type"
    if sink.strategy.mode == "incremental_merge":
        return "sink.strategy.merge_policy"  # the mode itself is supported
    return "sink.strategy.mode"


def _describe_sinks() -> str:
    return ", ".join(
        f"{kind} {mode}" + (f" ({variant})" if variant else "")
        for kind, mode, variant in sorted(SUPPORTED_SINK_STRATEGIES)
    )

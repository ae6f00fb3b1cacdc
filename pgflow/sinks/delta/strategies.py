"""Every Delta sink strategy, one line each, found by the spec's mode.

Adding a strategy: a module with its class (strategy.py), one line below, and its entry in
pgflow.config.support so that specs may ask for it.
"""

from __future__ import annotations

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta.append import Append
from pgflow.sinks.delta.delete import Delete
from pgflow.sinks.delta.full_refresh import FullRefresh
from pgflow.sinks.delta.merge import Merge
from pgflow.sinks.delta.partition_replace import PartitionReplace
from pgflow.sinks.delta.replace import Replace
from pgflow.sinks.delta.strategy import DeltaStrategy
from pgflow.sinks.delta.update import Update
from pgflow.sinks.registry import Registry

STRATEGIES: Registry[DeltaStrategy] = Registry(
    [
        FullRefresh(),
        Append(),
        Merge(),  # one Delta merge, whatever the merge policy
        Replace(),
        PartitionReplace(),
        Update(),  # keyed changes of an existing table: never inserts
        Delete(),
    ],
    unsupported="sink strategy {} is not supported for Delta",
)


def strategy_for(spec: StrategySpec) -> DeltaStrategy:
    return STRATEGIES.get(spec.mode)

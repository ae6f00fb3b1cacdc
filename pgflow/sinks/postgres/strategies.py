"""Every Postgres sink strategy, one line each, found by the spec's `StrategySpec.key`.

Adding a strategy: a module with its class (strategy.py says what it must tell the load),
one line below, and its entry in pgflow.config.support so that specs may ask for it.
"""

from __future__ import annotations

from pgflow.config.model import StrategySpec
from pgflow.sinks.postgres.append import Append
from pgflow.sinks.postgres.delete import Delete
from pgflow.sinks.postgres.exchange import Exchange
from pgflow.sinks.postgres.full_refresh import TruncateInsert
from pgflow.sinks.postgres.merge import DeleteInsert
from pgflow.sinks.postgres.partition_replace import PartitionReplace
from pgflow.sinks.postgres.replace import Replace
from pgflow.sinks.postgres.shadow_swap import ShadowSwap
from pgflow.sinks.postgres.strategy import PostgresStrategy, StagedStrategy
from pgflow.sinks.postgres.update import Update
from pgflow.sinks.postgres.upsert import Upsert
from pgflow.sinks.registry import Registry, UnsupportedStrategy

STRATEGIES: Registry[PostgresStrategy] = Registry(
    [
        TruncateInsert(),
        Exchange(),
        Append(),
        DeleteInsert(),
        Upsert(),
        ShadowSwap(),
        Replace(),
        PartitionReplace(),
        Update(),
        Delete(),
    ],
    unsupported="sink strategy {} is not supported",
)


def strategy_for(spec: StrategySpec) -> PostgresStrategy:
    return STRATEGIES.get(spec.key)


def staged_strategy_for(spec: StrategySpec) -> StagedStrategy:
    """The strategy of a spec whose rows are staged first (every one but full_refresh)."""
    strategy = strategy_for(spec)
    if not isinstance(strategy, StagedStrategy):
        raise UnsupportedStrategy(f"sink strategy {spec.key} does not apply staged rows")
    return strategy

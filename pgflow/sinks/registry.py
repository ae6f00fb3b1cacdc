"""A typed registry of sink strategies: one entry per strategy, found by its key.

Both sinks keep one: `pgflow.sinks.postgres.strategies` and `pgflow.sinks.delta.strategies`.
A strategy is a small class in its own module; adding one is that module plus one line in its
sink's registry (and, for specs to reach it, one entry in `pgflow.config.support`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar


class UnsupportedStrategy(ValueError):
    """The spec asks for a strategy this sink does not have."""


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


S = TypeVar("S", bound=Keyed)


class Registry(Generic[S]):
    """Strategies by key. `unsupported` is the message for an unknown key ({} is the key)."""

    def __init__(self, strategies: Iterable[S], unsupported: str) -> None:
        self._strategies: dict[str, S] = {}
        for strategy in strategies:
            if strategy.key in self._strategies:
                raise ValueError(f"strategy {strategy.key} is registered twice")
            self._strategies[strategy.key] = strategy
        self._unsupported = unsupported

    def get(self, key: str) -> S:
        strategy = self._strategies.get(key)
        if strategy is None:
            raise UnsupportedStrategy(self._unsupported.format(key))
        return strategy

    def __contains__(self, key: object) -> bool:
        return key in self._strategies

    def __iter__(self) -> Iterator[S]:
        return iter(self._strategies.values())

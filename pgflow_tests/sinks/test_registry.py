"""The strategy registries: every strategy a spec may ask for has exactly one, found by its key,
and an unknown key fails with the sink's own message."""

from __future__ import annotations

import pytest

from pgflow.config.model import StrategySpec
from pgflow.config.support import SUPPORTED_SINK_STRATEGIES
from pgflow.sinks.delta import strategies as delta_strategies
from pgflow.sinks.postgres import strategies as postgres_strategies
from pgflow.sinks.postgres.strategy import DirectStrategy, StagedStrategy
from pgflow.sinks.registry import Registry, UnsupportedStrategy


def spec(mode: str, variant: str) -> StrategySpec:
    if mode == "full_refresh" and variant:
        return StrategySpec(mode=mode, method=variant)  # type: ignore[arg-type]
    if mode == "incremental_merge" and variant:
        return StrategySpec(mode=mode, merge_policy=variant)  # type: ignore[arg-type]
    return StrategySpec(mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sink", "mode", "variant"), sorted(SUPPORTED_SINK_STRATEGIES), ids="/".join
)
def test_every_supported_strategy_has_its_class(sink: str, mode: str, variant: str) -> None:
    strategy_spec = spec(mode, variant)
    if sink == "postgres":
        strategy = postgres_strategies.strategy_for(strategy_spec)
        assert strategy.key == strategy_spec.key
        assert isinstance(strategy, DirectStrategy) == (mode == "full_refresh")
    else:
        assert delta_strategies.strategy_for(strategy_spec).key == mode


def test_spec_keys_name_mode_and_variant() -> None:
    assert StrategySpec(mode="full_refresh", method="exchange").key == "full_refresh/exchange"
    assert StrategySpec(mode="incremental_merge").key == "incremental_merge/delete_insert"
    assert StrategySpec(mode="replace").key == "replace"
    assert StrategySpec(mode="incremental_append").keyed is False
    assert StrategySpec(mode="incremental_append", only_new_rows=True).keyed is True
    assert StrategySpec(mode="incremental_merge", merge_policy="upsert").keyed is True


def test_only_the_row_changing_strategies_analyze_by_share() -> None:
    in_place = {s.key for s in postgres_strategies.STRATEGIES if s.in_place}
    assert in_place == {
        "incremental_append",
        "incremental_merge/delete_insert",
        "incremental_merge/upsert",
        "update",
        "delete",
    }
    assert [s.key for s in postgres_strategies.STRATEGIES if s.parallel] == [
        "full_refresh/exchange"
    ]
    # replace checks its predicate in staging; update and delete never create their target.
    assert [s.key for s in postgres_strategies.STRATEGIES if s.stages_first_load] == [
        "replace",
        "update",
        "delete",
    ]


def test_an_unknown_strategy_fails_with_the_sinks_message() -> None:
    with pytest.raises(UnsupportedStrategy, match=r"^sink strategy nope is not supported$"):
        postgres_strategies.STRATEGIES.get("nope")
    with pytest.raises(
        UnsupportedStrategy, match=r"^sink strategy nope is not supported for Delta$"
    ):
        delta_strategies.STRATEGIES.get("nope")


def test_a_full_refresh_has_no_staged_apply() -> None:
    with pytest.raises(UnsupportedStrategy, match="does not apply staged rows"):
        postgres_strategies.staged_strategy_for(StrategySpec(mode="full_refresh"))
    merge = postgres_strategies.staged_strategy_for(StrategySpec(mode="incremental_merge"))
    assert isinstance(merge, StagedStrategy)


def test_a_key_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        Registry(list(postgres_strategies.STRATEGIES) * 2, unsupported="{}")

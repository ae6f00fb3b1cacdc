"""sink: and its strategy: modes, fillfactor, parallelism, schema-change policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow_tests.config.specs import DROP, load_one, only_problem, pipeline, write


@pytest.mark.parametrize(
    "strategy",
    [
        {"mode": "incremental_append"},
        {"mode": "incremental_append", "only_new_rows": True, "unique_key": ["id"]},
        {"mode": "incremental_merge", "unique_key": ["id"]},
        {"mode": "incremental_merge", "merge_policy": "upsert", "unique_key": ["id", "line"]},
        {"mode": "incremental_merge", "merge_policy": "shadow_swap", "unique_key": ["id"]},
        {"mode": "replace", "custom_predicate": "order_date >= '2026-01-01'"},
        {"mode": "partition_replace", "partition_column": "business_date"},
    ],
)
def test_landed_sink_strategies_load(tmp_path: Path, strategy: dict[str, Any]) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    assert load_one(spec).sink.strategy.mode == strategy["mode"]


@pytest.mark.parametrize(
    "strategy",
    [
        {"mode": "full_refresh"},
        {"mode": "incremental_append"},
        {"mode": "incremental_merge", "unique_key": ["id"]},
        {"mode": "replace", "custom_predicate": "id > 10"},
        {"mode": "partition_replace", "partition_column": "business_date"},
    ],
)
def test_a_postgres_table_loads_into_delta_in_every_mode(
    tmp_path: Path, strategy: dict[str, Any]
) -> None:
    sink = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/landing/orders/"}
    spec = write(tmp_path / "p.yaml", pipeline(sink={**sink, "strategy": strategy}))
    loaded = load_one(spec)
    assert (loaded.asset_key, loaded.sink.strategy.mode) == (("delta", "orders"), strategy["mode"])


def test_supported_settings_that_do_not_apply_are_accepted(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"options": {"incremental_strategy": "full"}},
            sink={
                "strategy": {
                    "method": "truncate_insert",
                    "on_schema_change": "fail",
                    "native_mode": "auto",
                    "duplicate_policy": "fail",
                }
            },
        ),
    )
    assert load_one(spec).sink.strategy.on_schema_change == "fail"


def test_fillfactor_is_read_and_absent_means_pgflows_choice(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": {"fillfactor": 80}}))
    assert load_one(spec).sink.strategy.fillfactor == 80
    assert load_one(write(tmp_path / "q" / "p.yaml", pipeline())).sink.strategy.fillfactor is None


@pytest.mark.parametrize("value", [5, 101, 0, "90", 90.5])
def test_fillfactor_outside_postgres_range_names_the_field(tmp_path: Path, value: Any) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": {"fillfactor": value}}))
    problem = only_problem(spec)
    assert problem.startswith(
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.fillfactor'"
    )
    expected = "from 10 to 100" if isinstance(value, int) and value > 0 else "positive integer"
    assert expected in problem


def test_parallelism_is_read_for_an_exchange_and_defaults_to_one(tmp_path: Path) -> None:
    strategy = {"mode": "full_refresh", "method": "exchange", "parallelism": 4}
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    assert load_one(spec).sink.strategy.parallelism == 4
    assert load_one(write(tmp_path / "q" / "p.yaml", pipeline())).sink.strategy.parallelism == 1


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ({"method": "exchange", "parallelism": 0}, "must be a positive integer, got int 0"),
        ({"method": "exchange", "parallelism": 33}, "must be at most 32"),
        (
            {"parallelism": 4},
            "applies to postgres sinks with mode full_refresh and method exchange",
        ),
        (
            {"mode": "incremental_merge", "unique_key": ["id"], "parallelism": 2},
            "remove it or use method: exchange",
        ),
    ],
    ids=["zero", "too_many", "truncate_insert", "merge"],
)
def test_parallelism_outside_an_exchange_or_its_range_names_the_field(
    tmp_path: Path, strategy: dict[str, Any], expected: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    problem = only_problem(spec)
    assert problem.startswith(
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.parallelism'"
    )
    assert expected in problem


@pytest.mark.parametrize("policy", ["fail", "add_columns", "sync"])
def test_every_schema_change_policy_is_accepted(tmp_path: Path, policy: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": {"on_schema_change": policy}}))
    assert load_one(spec).sink.strategy.on_schema_change == policy


def test_schema_changes_default_to_add_columns(tmp_path: Path) -> None:
    assert load_one(write(tmp_path / "p.yaml", pipeline())).sink.strategy.on_schema_change == (
        "add_columns"
    )

"""name, asset_key, group, tags and owners: their defaults and Dagster's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgflow_tests.config.specs import ENV, load_one, only_problem, pipeline, problems_of, write


def test_defaults_come_from_the_sink_table_and_the_source_connection(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"connection_id": "shop"},
            sink={"table": {"schema": "raw", "name": "order_items"}},
        ),
    )
    p = load_one(spec)
    assert p.name == "raw_order_items"
    assert p.asset_key == ("raw", "order_items")
    assert p.group == "shop"


def test_default_group_is_made_a_valid_dagster_group_name(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"connection_id": "shop-db.eu"}))
    p = load_one(spec, {**ENV, "PGFLOW_CONN_SHOP_DB_EU": "postgresql://x@h/db"})
    assert p.source.connection_id == "shop-db.eu"
    assert p.group == "shop_db_eu"


def test_asset_key_slashes_at_the_ends_are_ignored_and_dashes_allowed(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(asset_key="/dwh/landing/order-items/"))
    assert load_one(spec).asset_key == ("dwh", "landing", "order-items")


def test_single_owner_string_and_nested_group(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(owners="team:sales", group="sales/landing"))
    p = load_one(spec)
    assert p.owners == ("team:sales",)
    assert p.group == "sales/landing"


@pytest.mark.parametrize("name", ["9orders", "my-orders", "orders daily", "ordèrs", ""])
def test_invalid_name(tmp_path: Path, name: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(name=name))
    problem = only_problem(spec)
    assert problem.endswith(
        f"field 'name': '{name}' must be letters, digits and _ (not starting with a digit)"
    )
    if name:
        assert f"pipeline '{name}'" in problem


@pytest.mark.parametrize("asset_key", ["landing orders", "a//b", "a/b.c", "", "/", "a/ü"])
def test_invalid_asset_key(tmp_path: Path, asset_key: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(asset_key=asset_key))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'asset_key': '{asset_key}' must be parts of "
        "letters, digits, _ or - joined by /, e.g. landing/orders"
    )


@pytest.mark.parametrize("group", ["sales-team", "sales team", "sales/", "/sales", "a//b"])
def test_invalid_group(tmp_path: Path, group: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(group=group))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'group': "
        f"'{group}' must be letters, digits and _ (segments joined by /)"
    )


@pytest.mark.parametrize("owner", ["alice", "team:", "alice@localhost", "@example.com"])
def test_invalid_owner(tmp_path: Path, owner: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(owners=["team:data", owner]))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'owners': '{owner}' must be an email address "
        "or team:<name>, e.g. [team:data-platform, ana@example.com]"
    )


def test_invalid_tags(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(tags={"my key": "x", "domain": "sales team", "long": "x" * 64, "ok/k.e-y_": "v"}),
    )
    allowed = "must be letters, digits, _, - or . (at most 63 characters)"
    assert problems_of(spec) == [
        f"{spec}: pipeline 'landing_orders': field 'tags': tag name 'my key' {allowed}",
        f"{spec}: pipeline 'landing_orders': field 'tags.domain': 'sales team' {allowed}",
        f"{spec}: pipeline 'landing_orders': field 'tags.long': '{'x' * 64}' {allowed}",
    ]

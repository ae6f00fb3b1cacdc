"""Checks across a project: connections every pipeline names, and the targets, asset keys and
names no two pipelines may share (CDC slot groups: test_cdc_groups.py)."""

from __future__ import annotations

from pathlib import Path

from pgflow.config.environment import env_var_for
from pgflow.config.loader import load_project
from pgflow_tests.config.specs import (
    ENV,
    load_one,
    only_problem,
    pipeline,
    problems_of,
    write,
)


def test_vault_connections_are_known_when_vault_is_configured(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"connection_id": "oltp", "connection_type": "vault"},
            sink={"connection_id": "dwh", "connection_type": "vault"},
        ),
    )
    p = load_one(spec, {"VAULT_ADDR": "https://vault:8200"})
    assert (p.source.connection_type, p.sink.connection_type) == ("vault", "vault")


def test_unknown_env_connections_name_the_variable_to_set(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"connection_id": "shop-db.eu"}))
    assert env_var_for("shop-db.eu") == "PGFLOW_CONN_SHOP_DB_EU"
    assert problems_of(spec, {}) == [
        f"{spec}: pipeline 'landing_orders': field 'source.connection_id': connection "
        "'shop-db.eu' is unknown: set PGFLOW_CONN_SHOP_DB_EU to a libpq URI or declare it "
        "under `connections:`",
        f"{spec}: pipeline 'landing_orders': field 'sink.connection_id': connection "
        "'warehouse' is unknown: set PGFLOW_CONN_WAREHOUSE to a libpq URI or declare it "
        "under `connections:`",
    ]


def test_an_empty_env_variable_does_not_configure_a_connection(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline())
    problem = only_problem(spec, {**ENV, "PGFLOW_CONN_SHOP": ""})
    assert (
        "field 'source.connection_id': connection 'shop' is unknown: set PGFLOW_CONN_SHOP"
        in problem
    )


def test_unknown_vault_connection_without_vault_addr(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml", pipeline(source={"connection_id": "oltp", "connection_type": "vault"})
    )
    expected = (
        f"{spec}: pipeline 'landing_orders': field 'source.connection_id': connection 'oltp' is "
        "unknown: set VAULT_ADDR (and VAULT_TOKEN or VAULT_ROLE_ID/VAULT_SECRET_ID) or declare it "
        "under `connections:`"
    )
    assert problems_of(spec, ENV) == [expected]
    assert problems_of(spec, {**ENV, "VAULT_ADDR": ""}) == [expected]
    # The env variable of the same id does not count for a vault connection.
    assert problems_of(spec, {**ENV, "PGFLOW_CONN_OLTP": "postgresql://x@h/db"}) == [expected]


def test_a_connection_used_with_another_type_than_declared(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "shop.yaml",
        {
            "connections": {"shop": {"type": "env"}, "warehouse": {"type": "vault"}},
            "pipelines": [pipeline()],
        },
    )
    assert problems_of(spec, {}) == [
        f"{spec}: pipeline 'landing_orders': field 'sink.connection_id': connection 'warehouse' "
        f"is declared with type vault in {spec}, but used here with connection_type env; "
        "make them agree"
    ]


def test_two_pipelines_writing_one_target(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", pipeline(name="orders_a", asset_key="a/orders"))
    second = write(
        tmp_path / "b.yaml",
        pipeline(name="orders_b", asset_key="b/orders", source={"table": {"name": "orders_v2"}}),
    )
    assert problems_of(tmp_path) == [
        f"{second}: pipeline 'orders_b': field 'sink': writes the same target as pipeline "
        f"'orders_a' in {first} (postgres:warehouse:landing.orders); each pipeline needs its own"
    ]


def test_the_same_table_on_another_sink_connection_is_another_target(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline(name="orders_a", asset_key="a/orders"))
    write(
        tmp_path / "b.yaml",
        pipeline(name="orders_b", asset_key="b/orders", sink={"connection_id": "shop"}),
    )
    assert len(load_project(tmp_path, environ=ENV).pipelines) == 2


def test_duplicate_asset_keys(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", pipeline(name="orders_a", asset_key="dwh/orders"))
    second = write(
        tmp_path / "b.yaml",
        pipeline(name="orders_b", asset_key="dwh/orders", sink={"table": {"name": "orders2"}}),
    )
    assert problems_of(tmp_path) == [
        f"{second}: pipeline 'orders_b': field 'asset_key': target landing.orders2 on "
        "connection 'warehouse' has the asset key dwh/orders, as target landing.orders on "
        f"connection 'warehouse' of pipeline 'orders_a' in {first}; give one of them another "
        "`asset_key:` (e.g. asset_key: landing/orders_v2)"
    ]


def test_duplicate_names(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        {
            "pipelines": [
                pipeline(name="orders"),
                pipeline(name="orders", sink={"table": {"name": "orders_copy"}}),
            ]
        },
    )
    assert problems_of(spec) == [
        f"{spec}: pipeline 'orders': field 'name': has the same name as pipeline 'orders' in "
        f"{spec} (orders); each pipeline needs its own"
    ]


def test_a_copied_pipeline_reports_target_key_and_name(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline())
    copied = write(tmp_path / "b.yaml", pipeline())
    problems = problems_of(tmp_path)
    # One target, so one asset key: the clash is the target's, reported once under `sink`.
    assert [p.split(": ")[2] for p in problems] == ["field 'sink'", "field 'name'"]
    assert all(p.startswith(f"{copied}: pipeline 'landing_orders'") for p in problems)

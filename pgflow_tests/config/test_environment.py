"""The environment variables specs depend on: PGFLOW_CONFIG and PGFLOW_CONN_<ID>."""

from __future__ import annotations

from pathlib import Path

from pgflow.config.environment import config_path, env_var_for


def test_a_connection_id_becomes_its_variable_name() -> None:
    assert env_var_for("shop") == "PGFLOW_CONN_SHOP"
    assert env_var_for("shop-db.eu") == "PGFLOW_CONN_SHOP_DB_EU"


def test_config_path_is_pgflow_config_else_the_pipelines_folder() -> None:
    assert config_path({"PGFLOW_CONFIG": "/etc/specs"}) == Path("/etc/specs")
    assert config_path({"PGFLOW_CONFIG": ""}) == Path("pipelines")
    assert config_path({}) == Path("pipelines")

"""connections: (with their staleness sensor) and groups: declared next to the pipelines."""

from __future__ import annotations

from pathlib import Path

from pgflow.config.loader import load_project
from pgflow.config.model import ScheduleSpec, SensorSpec
from pgflow_tests.config.specs import ENV, only_problem, pipeline, problems_of, write


def test_declared_connections_are_known_without_env_variables(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "shop.yaml",
        {
            "connections": {"shop": {"type": "env"}, "warehouse": None},
            "pipelines": [pipeline()],
        },
    )
    project = load_project(spec, environ={})
    assert set(project.connections) == {"shop", "warehouse"}
    assert project.connections["shop"].type == "env"
    assert project.connections["shop"].file == spec
    assert project.connections["warehouse"].type == "env"


def test_connections_next_to_a_single_top_level_pipeline(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "orders.yaml",
        """
        connections:
          shop: {type: env}
          warehouse: {type: vault}
        source:
          type: postgres
          connection_id: shop
          table: {schema: public, name: orders}
        sink:
          type: postgres
          connection_id: warehouse
          connection_type: vault
          table: {schema: landing, name: orders}
          strategy: {mode: full_refresh}
        """,
    )
    project = load_project(spec, environ={})
    assert [p.name for p in project.pipelines] == ["landing_orders"]
    assert project.connections["warehouse"].type == "vault"


def test_connections_declared_in_another_file(tmp_path: Path) -> None:
    write(
        tmp_path / "connections.yaml", {"connections": {"shop": {"type": "env"}, "warehouse": {}}}
    )
    write(tmp_path / "orders.yaml", pipeline())
    project = load_project(tmp_path, environ={})
    assert len(project.pipelines) == 1
    assert set(project.connections) == {"shop", "warehouse"}


def test_declared_connection_mistakes(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "c.yaml",
        {"connections": {"shop": {"type": "aws"}, "warehouse": {"typ": "env"}, "crm": "env"}},
    )
    assert problems_of(spec, {}) == [
        f"{spec}: field 'connections.shop.type': 'aws' is not allowed; use one of: env, vault",
        f"{spec}: field 'connections.warehouse.typ': is not a known field; allowed here: "
        "sensor, session_settings, set_role, type",
        f"{spec}: field 'connections.crm': must be a mapping, got str 'env'",
    ]


def test_sensor_settings_per_connection(tmp_path: Path) -> None:
    spec = {
        "connections": {
            "shop": {"type": "env", "sensor": {"minimum_interval_seconds": 300, "running": True}},
            "warehouse": {"type": "env"},
        },
        "pipelines": [pipeline()],
    }
    project = load_project(write(tmp_path / "p.yaml", spec), ENV)
    assert project.sensor_settings("shop") == SensorSpec(300, True)
    assert project.sensor_settings("warehouse") == SensorSpec(60, False)
    assert project.sensor_settings("undeclared") == SensorSpec()


def test_sensor_setting_mistakes(tmp_path: Path) -> None:
    spec = {
        "connections": {"shop": {"sensor": {"minimum_interval_seconds": 0, "running": "yes"}}},
        "pipelines": [pipeline()],
    }
    problems = problems_of(write(tmp_path / "p.yaml", spec))
    assert any("connections.shop.sensor.minimum_interval_seconds" in p for p in problems), problems
    assert any("connections.shop.sensor.running" in p and "true or false" in p for p in problems)


def test_group_schedule(tmp_path: Path) -> None:
    spec = {
        "groups": {"shop": {"schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}}},
        "pipelines": [pipeline()],
    }
    project = load_project(write(tmp_path / "p.yaml", spec), ENV)
    assert project.groups["shop"].schedule == ScheduleSpec("0 2 * * *", "Europe/Berlin")


def test_group_mistakes(tmp_path: Path) -> None:
    unknown = {"groups": {"shpo": {"schedule": "0 2 * * *"}}, "pipelines": [pipeline()]}
    problem = only_problem(write(tmp_path / "a" / "p.yaml", unknown))
    assert "groups.shpo" in problem and "groups in use: shop" in problem

    bad_cron = {"groups": {"shop": {"schedule": "every night"}}, "pipelines": [pipeline()]}
    problem = only_problem(write(tmp_path / "b" / "p.yaml", bad_cron))
    assert "groups.shop.schedule" in problem and "not a valid cron" in problem

    write(tmp_path / "c" / "one.yaml", {"groups": {"shop": {"schedule": "@daily"}}})
    write(
        tmp_path / "c" / "two.yaml",
        {"groups": {"shop": {"schedule": "@hourly"}}, "pipelines": [pipeline()]},
    )
    problem = only_problem(tmp_path / "c")
    assert "groups.shop" in problem and "also declared in" in problem and "one.yaml" in problem

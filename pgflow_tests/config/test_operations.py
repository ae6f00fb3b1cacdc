"""Spec fields for operating pipelines in Dagster: time partitions, check thresholds, the
staleness sensor per connection, and group schedules; each mistake named by file and field."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pgflow.config.loader import load_project
from pgflow.config.model import ChecksSpec, PartitionsSpec, ScheduleSpec, SensorSpec
from pgflow_tests.config.test_loader import (
    ENV,
    load_one,
    only_problem,
    pipeline,
    problems_of,
    write,
)

PARTITIONED_SINK = {
    "type": "postgres",
    "connection_id": "warehouse",
    "table": {"schema": "landing", "name": "orders"},
    "strategy": {"mode": "partition_replace", "partition_column": "ordered_at"},
}


def partitioned(**partitions: object) -> dict:
    return pipeline(sink=PARTITIONED_SINK, partitions=partitions)


def test_daily_and_monthly_partitions(tmp_path: Path) -> None:
    daily = load_one(write(tmp_path / "a.yaml", partitioned(type="daily", start="2026-01-01")))
    assert daily.partitions == PartitionsSpec("daily", date(2026, 1, 1), "UTC", 0)
    spec = partitioned(type="monthly", start="2025-07-01", timezone="Europe/Berlin", end_offset=1)
    monthly = load_one(write(tmp_path / "b" / "b.yaml", spec))
    assert monthly.partitions == PartitionsSpec("monthly", date(2025, 7, 1), "Europe/Berlin", 1)


def test_partition_mistakes_name_the_field(tmp_path: Path) -> None:
    cases = [
        (partitioned(type="hourly", start="2026-01-01"), "partitions.type", "daily, monthly"),
        (partitioned(type="daily", start="01/02/2026"), "partitions.start", "YYYY-MM-DD"),
        (partitioned(type="daily"), "partitions.start", "YYYY-MM-DD"),
        (partitioned(type="monthly", start="2026-01-15"), "partitions.start", "2026-01-01"),
        (
            partitioned(type="daily", start="2026-01-01", timezone="Mars/Base"),
            "partitions.timezone",
            "IANA",
        ),
        (partitioned(type="daily", start="2026-01-01", end_offset=5), "partitions.end_offset", "0"),
        (
            partitioned(type="daily", start="2026-01-01", every="day"),
            "partitions.every",
            "not a known field",
        ),
        (
            pipeline(partitions={"type": "daily", "start": "2026-01-01"}),
            "partitions",
            "partition_replace",
        ),
    ]
    for number, (spec, field, hint) in enumerate(cases):
        problem = only_problem(write(tmp_path / f"{number}" / "p.yaml", spec))
        assert f"'{field}'" in problem or f" {field}:" in problem or field in problem, problem
        assert hint in problem, problem
        assert "p.yaml" in problem


def test_check_thresholds(tmp_path: Path) -> None:
    spec = pipeline(checks={"row_count_tolerance": 0.05, "retained_wal_warn": "512MB"})
    p = load_one(write(tmp_path / "p.yaml", spec))
    assert p.checks == ChecksSpec(row_count_tolerance=0.05, retained_wal_warn_bytes=512 * 1024**2)
    assert load_one(write(tmp_path / "d" / "p.yaml", pipeline())).checks == ChecksSpec()


def test_check_threshold_mistakes(tmp_path: Path) -> None:
    cases = [
        ({"row_count_tolerance": 2}, "checks.row_count_tolerance", "fraction"),
        ({"row_count_tolerance": "1%"}, "checks.row_count_tolerance", "fraction"),
        ({"retained_wal_warn": "lots"}, "checks.retained_wal_warn", "512MB"),
        ({"retained_wal_warn": -5}, "checks.retained_wal_warn", "positive"),
        ({"unique": False}, "checks.unique", "not a known field"),
    ]
    for number, (checks, field, hint) in enumerate(cases):
        problem = only_problem(write(tmp_path / f"{number}" / "p.yaml", pipeline(checks=checks)))
        assert field in problem and hint in problem, problem


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

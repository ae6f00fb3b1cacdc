"""`checks:` of a pipeline spec, value_parity's options included: values, defaults, errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pgflow.config.checks_reader import read_checks
from pgflow.config.model import ChecksSpec, ScheduleSpec, ValueParitySpec
from pgflow.config.reader import Section
from pgflow_tests.config.specs import load_one, only_problem, pipeline, write


def read(data: dict[str, Any], key: tuple[str, ...] = ("id",)) -> tuple[ChecksSpec, list[str]]:
    problems: list[str] = []
    found = read_checks(Section(data, "checks", lambda f, m: problems.append(f"{f}: {m}")), key)
    return found, problems


def test_value_parity_defaults_on_every_row_with_a_five_minute_timeout() -> None:
    assert read({})[0].value_parity == ValueParitySpec(True, 1.0, timedelta(minutes=5))
    assert read({"value_parity": True}) == (ChecksSpec(), [])
    assert read({"value_parity": False})[0].value_parity.enabled is False


def test_value_parity_sample_and_timeout() -> None:
    found, problems = read({"value_parity": {"sample": 0.1, "timeout": "10m"}})
    assert problems == []
    assert found.value_parity == ValueParitySpec(True, 0.1, timedelta(minutes=10))


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        (
            {"value_parity": {"sample": 1.5}},
            ("id",),
            "checks.value_parity.sample: must be a fraction above 0 up to 1 (0.1 hashes the "
            "rows of 10% of the key buckets), got 1.5",
        ),
        (
            {"value_parity": {"sample": 0.5}},
            (),
            "checks.value_parity.sample: needs sink.strategy.unique_key: buckets are drawn from "
            "the key (without one every row is hashed anyway); set a unique_key or remove sample",
        ),
        (
            {"value_parity": {"timeout": "soon"}},
            ("id",),
            "checks.value_parity.timeout: 'soon' is not a duration; write a number and a unit, "
            "e.g. 30s, 5m, 5 minutes, 2h, 1d",
        ),
        (
            {"value_parity": {"sampel": 0.5}},
            ("id",),
            "checks.value_parity.sampel: is not a known field; allowed here: sample, timeout",
        ),
        (
            {"value_parity": "yes"},
            ("id",),
            "checks.value_parity: must be a mapping, got str 'yes'",
        ),
    ],
)
def test_bad_value_parity_options_name_the_field_and_the_fix(
    data: dict[str, Any], key: tuple[str, ...], problem: str
) -> None:
    assert read(data, key)[1] == [problem]


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


def test_scan_schedule_defaults_to_daily_and_takes_a_cron_a_mapping_or_false(
    tmp_path: Path,
) -> None:
    assert read({})[0].scan_schedule == ScheduleSpec("0 3 * * *", "UTC")
    assert read({"scan_schedule": "*/30 * * * *"}) == (
        ChecksSpec(scan_schedule=ScheduleSpec("*/30 * * * *", "UTC")),
        [],
    )
    berlin = {"cron": "0 1 * * 0", "timezone": "Europe/Berlin"}
    assert read({"scan_schedule": berlin})[0].scan_schedule == ScheduleSpec(
        "0 1 * * 0", "Europe/Berlin"
    )
    assert read({"scan_schedule": False}) == (ChecksSpec(scan_schedule=None), [])
    p = load_one(write(tmp_path / "p.yaml", pipeline(checks={"scan_schedule": "0 4 * * *"})))
    assert p.checks.scan_schedule == ScheduleSpec("0 4 * * *", "UTC")


def test_scan_schedule_mistakes_name_the_file_the_pipeline_the_field_and_the_fix(
    tmp_path: Path,
) -> None:
    cases = [
        ("daily", "'daily' is not a valid cron expression, e.g. '0 * * * *' (hourly)"),
        (True, "must be a cron string, a mapping with `cron` and `timezone`, or false"),
        ("", "or false (the scan checks then run only by hand), got ''"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is unknown"),
        (
            {"cron": "0 3 * * *", "tz": "UTC"},
            "field 'checks.scan_schedule.tz': is not a known field; allowed here: cron, timezone",
        ),
        (7, "must be a cron string or a mapping with `cron` and `timezone`"),
    ]
    for number, (value, hint) in enumerate(cases):
        path = write(tmp_path / f"{number}" / "p.yaml", pipeline(checks={"scan_schedule": value}))
        problem = only_problem(path)
        assert problem.startswith(
            f"{path}: pipeline 'landing_orders': field 'checks.scan_schedule"
        ), problem
        assert hint in problem, problem


def test_scan_after_load_defaults_to_false_and_takes_only_a_boolean(tmp_path: Path) -> None:
    assert read({})[0].scan_after_load is False
    assert read({"scan_after_load": True}) == (ChecksSpec(scan_after_load=True), [])
    for number, value in enumerate(["yes", 1, {"whole": True}]):
        path = write(tmp_path / f"{number}" / "p.yaml", pipeline(checks={"scan_after_load": value}))
        problem = only_problem(path)
        assert problem.startswith(
            f"{path}: pipeline 'landing_orders': field 'checks.scan_after_load'"
        ), problem
        assert "must be true (the scan checks also run after every whole load) or false" in (
            problem
        ), problem
        assert f"got {value!r}" in problem, problem

"""schedule, freshness and time partitions: their forms, defaults and mistakes."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from pgflow.config.model import FreshnessSpec, PartitionsSpec, ScheduleSpec
from pgflow_tests.config.specs import load_one, only_problem, pipeline, write


def test_schedule_and_freshness_as_mappings(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            schedule={"cron": "30 6 * * 1-5", "timezone": "Europe/Berlin"},
            freshness={"warn_after": "12h", "fail_after": "1 day"},
        ),
    )
    p = load_one(spec)
    assert p.schedule == ScheduleSpec(cron="30 6 * * 1-5", timezone="Europe/Berlin")
    assert p.freshness == FreshnessSpec(
        fail_after=timedelta(days=1), warn_after=timedelta(hours=12)
    )


def test_schedule_mapping_defaults_to_utc_and_freshness_mapping_without_warn(
    tmp_path: Path,
) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(schedule={"cron": "@daily"}, freshness={"fail_after": "90 minutes"}),
    )
    p = load_one(spec)
    assert p.schedule == ScheduleSpec(cron="@daily", timezone="UTC")
    assert p.freshness == FreshnessSpec(fail_after=timedelta(minutes=90))


@pytest.mark.parametrize("cron", ["every hour", "61 * * * *", "0 0 * * * *", "* * *", "0 0 30 2 *"])
def test_bad_cron(tmp_path: Path, cron: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(schedule=cron))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'schedule': "
        f"'{cron}' is not a valid cron expression, e.g. '0 * * * *' (hourly)"
    )


def test_bad_cron_in_the_mapping_form(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(schedule={"cron": "hourly", "timezone": "UTC"}))
    assert "field 'schedule': 'hourly' is not a valid cron expression" in only_problem(spec)


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "CEST+2", "../etc/passwd", "utc+2"])
def test_bad_timezone(tmp_path: Path, timezone: str) -> None:
    spec = write(
        tmp_path / "p.yaml", pipeline(schedule={"cron": "0 * * * *", "timezone": timezone})
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'schedule': timezone '{timezone}' is unknown; "
        "use an IANA name such as UTC or Europe/Berlin"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"freshness": "2 fortnights"}, "freshness", "2 fortnights"),
        ({"freshness": {"fail_after": "soon"}}, "freshness", "soon"),
        ({"freshness": {"warn_after": "1 week", "fail_after": "2d"}}, "freshness", "1 week"),
        ({"source": {"options": {"lookback": "a bit"}}}, "source.options.lookback", "a bit"),
    ],
)
def test_bad_duration(tmp_path: Path, overrides: dict[str, Any], field: str, text: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field '{field}': '{text}' is not a duration; "
        "write a number and a unit, e.g. 30s, 5m, 5 minutes, 2h, 1d"
    )


def test_a_huge_duration_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(freshness="99999999999d"))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'freshness': "
        "'99999999999d' is too long a duration; write at most 999999999 days"
    )


@pytest.mark.parametrize(("warn", "fail"), [("2h", "1h"), ("1h", "60m"), ("1d", "23h")])
def test_warn_after_must_be_shorter_than_fail_after(tmp_path: Path, warn: str, fail: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(freshness={"warn_after": warn, "fail_after": fail}))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'freshness': "
        "warn_after must be shorter than fail_after"
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


def test_an_end_offset_that_is_not_a_number_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", partitioned(type="daily", start="2026-01-01", end_offset="x"))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'partitions.end_offset': must be 0 (complete "
        "periods only) or 1 (also the current one), got 'x'"
    )

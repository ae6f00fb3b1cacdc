"""sink.options.maintenance: read for Delta sinks, refused for Postgres ones, every mistake
reported with its file, pipeline, field and fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pgflow.config.model import DeltaMaintenance, ScheduleSpec
from pgflow_tests.config.specs import DROP, load_one, only_problem, pipeline, write

DELTA_SINK = {
    "type": "delta",
    "connection_id": DROP,
    "table": DROP,
    "path": "/lake/orders",
    "strategy": {"mode": "incremental_append"},
}


def delta_spec(tmp_path: Path, maintenance: Any) -> Path:
    sink = {**DELTA_SINK, "options": {"maintenance": maintenance}}
    return write(tmp_path / "orders.yaml", pipeline(name="orders", sink=sink))


def test_every_field_is_read(tmp_path: Path) -> None:
    maintenance = {
        "optimize_every": 20,
        "target_file_size": "128MB",
        "vacuum_retention": "14 days",
        "checkpoint": False,
        "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"},
    }
    spec = load_one(delta_spec(tmp_path, maintenance))
    assert spec.sink.maintenance == DeltaMaintenance(
        optimize_every=20,
        target_file_size=128 * 1024**2,
        vacuum_retention=timedelta(days=14),
        checkpoint=False,
        schedule=ScheduleSpec("0 3 * * *", "Europe/Berlin"),
    )


def test_defaults_and_no_maintenance(tmp_path: Path) -> None:
    assert load_one(delta_spec(tmp_path / "a", {})).sink.maintenance == DeltaMaintenance(
        optimize_every=0, vacuum_retention=timedelta(days=7), checkpoint=True, schedule=None
    )
    plain = write(tmp_path / "b" / "b.yaml", pipeline(sink=DELTA_SINK))
    assert load_one(plain).sink.maintenance is None


def test_short_retention_only_when_allowed(tmp_path: Path) -> None:
    allowed = {"vacuum_retention": "0h", "allow_short_retention": True}
    spec = load_one(delta_spec(tmp_path, allowed))
    assert spec.sink.maintenance is not None
    assert spec.sink.maintenance.vacuum_retention == timedelta(0)


@pytest.mark.parametrize(
    ("maintenance", "field", "message"),
    [
        ({"optimize_every": -1}, "optimize_every", "must be a number of commits (0: never)"),
        ({"optimize_every": "often"}, "optimize_every", "got 'often'; e.g. 20 compacts"),
        ({"optimize_every": True}, "optimize_every", "must be a number of commits"),
        ({"target_file_size": "huge"}, "target_file_size", "'huge' is not a size"),
        ({"vacuum_retention": "a week"}, "vacuum_retention", "'a week' is not a duration"),
        ({"vacuum_retention": "90m"}, "vacuum_retention", "not a whole number of hours"),
        (
            {"vacuum_retention": "1 day"},
            "vacuum_retention",
            "below Delta's own retention check (7 days)",
        ),
        ({"checkpoint": "yes"}, "checkpoint", "must be true or false"),
        ({"schedule": "every night"}, "schedule", "is not a valid cron expression"),
        ({"optimise_every": 3}, "optimise_every", "is not a known field"),
        ("weekly", None, "must be a mapping"),
    ],
)
def test_mistakes_name_file_pipeline_field_and_fix(
    tmp_path: Path, maintenance: Any, field: str | None, message: str
) -> None:
    problem = only_problem(delta_spec(tmp_path, maintenance))
    where = "sink.options.maintenance" + (f".{field}" if field else "")
    assert str(tmp_path / "orders.yaml") in problem
    assert "pipeline 'orders'" in problem
    assert f"field '{where}'" in problem
    assert message in problem


def test_refused_on_postgres_sinks(tmp_path: Path) -> None:
    sink = {"options": {"maintenance": {"optimize_every": 5}}}
    problem = only_problem(write(tmp_path / "p.yaml", pipeline(name="pg", sink=sink)))
    assert "field 'sink.options.maintenance'" in problem
    assert "applies to Delta sinks only" in problem and "remove it" in problem

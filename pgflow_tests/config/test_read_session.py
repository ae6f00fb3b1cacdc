"""set_role and session_settings on a declared connection; create_partitions and
partition_interval on a sink strategy: what is read, and what is refused with file, field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow.config.loader import load_project
from pgflow.config.model import SessionSetup, SessionValue
from pgflow_tests.config.specs import (
    DELTA_SOURCE,
    ENV,
    MERGE_SINK,
    load_one,
    only_problem,
    pipeline,
    problems_of,
    write,
)


def with_connection(tmp_path: Path, entry: Any) -> Path:
    return write(
        tmp_path / "shop.yaml",
        {"connections": {"warehouse": entry}, "pipelines": [pipeline()]},
    )


def test_role_and_settings_are_read_in_order(tmp_path: Path) -> None:
    spec = with_connection(
        tmp_path,
        {
            "set_role": "Tenant Writer",
            "session_settings": {
                "app.tenant": "acme",
                "statement_timeout": 30000,
                "synchronous_commit": False,
                "app.token": {"env": "PGFLOW_TENANT_TOKEN"},
            },
        },
    )
    session = load_project(spec, environ=ENV).connections["warehouse"].session
    assert session == SessionSetup(
        "Tenant Writer",
        (
            SessionValue("app.tenant", "acme"),
            SessionValue("statement_timeout", "30000"),
            SessionValue("synchronous_commit", "off"),
            SessionValue("app.token", env="PGFLOW_TENANT_TOKEN"),
        ),
    )
    assert [v.secret for v in session.settings] == [False, False, False, True]


@pytest.mark.parametrize(
    ("settings", "field", "says"),
    [
        (
            {"app.key": {"value": "s3cret", "secret": True}},
            "app.key",
            "cannot be written in a spec",
        ),
        ({"role": "admin"}, "role", "use set_role"),
        ({"Session_Authorization": "x"}, "Session_Authorization", "use set_role"),
        ({"app tenant": "x"}, "app tenant", "is not a setting name"),
        ({"app.key": {"env": "1BAD"}}, "app.key", "{env: NAME}"),
        ({"app.key": ["a"]}, "app.key", "must be a string, number"),
    ],
)
def test_bad_session_settings(tmp_path: Path, settings: dict, field: str, says: str) -> None:
    spec = with_connection(tmp_path, {"session_settings": settings})
    problem = only_problem(spec)
    assert str(spec) in problem
    assert f"connections.warehouse.session_settings.{field}" in problem
    assert says in problem
    assert "s3cret" not in problem


def test_set_role_must_be_a_name(tmp_path: Path) -> None:
    problem = only_problem(with_connection(tmp_path, {"set_role": "r" * 64}))
    assert "connections.warehouse.set_role" in problem and "1 to 63 characters" in problem


def test_session_fields_on_a_delta_sink_are_refused(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "lake.yaml",
        pipeline(
            sink={
                "type": "delta",
                "connection_id": None,
                "table": None,
                "path": "/lake/orders",
                "set_role": "writer",
                "session_settings": {"app.tenant": "acme"},
            }
        ),
    )
    problems = "\n".join(problems_of(spec))
    assert "sink.set_role" in problems and "sink.session_settings" in problems
    assert "Postgres connections only" in problems
    assert str(spec) in problems


def test_session_fields_on_a_delta_source_are_refused(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "lake.yaml",
        pipeline(source={**DELTA_SOURCE, "set_role": "reader"}, sink=MERGE_SINK),
    )
    problems = "\n".join(problems_of(spec))
    assert "source.set_role" in problems and "Postgres connections only" in problems


def test_session_fields_on_a_postgres_endpoint_point_to_the_connection(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"set_role": "writer"}))
    problem = only_problem(spec)
    assert "sink.set_role" in problem and "connections: {warehouse: {set_role: ...}}" in problem


def test_create_partitions_is_read(tmp_path: Path) -> None:
    strategy = {
        "mode": "incremental_append",
        "create_partitions": True,
        "partition_interval": "month",
    }
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    read = load_one(spec).sink.strategy
    assert read.create_partitions and read.partition_interval == "month"


@pytest.mark.parametrize(
    ("strategy", "says"),
    [
        (
            {"mode": "incremental_append", "partition_interval": "day"},
            "only with create_partitions",
        ),
        (
            {"mode": "incremental_append", "create_partitions": True, "partition_interval": "week"},
            "'week' is not allowed; use one of: day, month, year",
        ),
        ({"mode": "full_refresh", "create_partitions": True}, "applies to modes partition_replace"),
        (
            {
                "mode": "incremental_merge",
                "unique_key": ["id"],
                "merge_policy": "shadow_swap",
                "create_partitions": True,
            },
            "does not apply to merge_policy shadow_swap",
        ),
        ({"mode": "incremental_append", "create_partitions": "yes"}, "must be true or false"),
    ],
)
def test_bad_create_partitions(tmp_path: Path, strategy: dict, says: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    problem = only_problem(spec)
    assert str(spec) in problem and "sink.strategy." in problem and says in problem


def test_create_partitions_on_a_delta_sink_is_refused(tmp_path: Path) -> None:
    sink = {
        "type": "delta",
        "connection_id": None,
        "table": None,
        "path": "/lake/orders",
        "strategy": {"mode": "incremental_append", "create_partitions": True},
    }
    spec = write(tmp_path / "p.yaml", pipeline(sink=sink))
    problems = "\n".join(problems_of(spec))
    assert "sink.strategy.create_partitions" in problems and "postgres sinks only" in problems

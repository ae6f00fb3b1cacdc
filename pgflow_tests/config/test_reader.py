"""The Section reader through whole specs: unknown keys, wrong choices, wrong types and missing
fields are each named by their field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow.config.model import TableName
from pgflow.config.reader import Section
from pgflow_tests.config.specs import (
    DROP,
    PIPELINE_KEYS,
    load_one,
    only_problem,
    pipeline,
    problems_of,
    write,
)

MODES = "full_refresh, incremental_append, incremental_merge, replace, partition_replace, update, delete"

STRATEGY_KEYS = (
    "create_partitions, custom_predicate, duplicate_policy, fillfactor, max_rejected, "
    "merge_policy, method, mode, native_mode, on_bad_rows, on_schema_change, on_unmatched, "
    "only_new_rows, parallelism, partition_column, partition_interval, unique_key, "
    "update_columns"
)


def test_numbers_are_read_as_text(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"table": {"schema": "y2024", "name": 2024}}))
    p = load_one(spec)
    assert p.sink.table == TableName("y2024", "2024")
    assert p.asset_key == ("y2024", "2024")


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        (
            {"sink": {"strategy": {"unique_key": DROP, "uniqe_key": ["id"]}}},
            "sink.strategy.uniqe_key",
            STRATEGY_KEYS,
        ),
        ({"shedule": "0 * * * *"}, "shedule", PIPELINE_KEYS),
        (
            {"source": {"conection_id": "shop"}},
            "source.conection_id",
            "connection_id, connection_type, options, path, query, table, type",
        ),
        ({"sink": {"table": {"table": "x"}}}, "sink.table.table", "name, schema"),
        ({"schedule": {"cron": "0 * * * *", "tz": "UTC"}}, "schedule.tz", "cron, timezone"),
    ],
)
def test_unknown_keys_list_the_allowed_ones(
    tmp_path: Path, overrides: dict[str, Any], field: str, allowed: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field '{field}': "
        f"is not a known field; allowed here: {allowed}"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "value", "allowed"),
    [
        ({"sink": {"strategy": {"mode": "full"}}}, "sink.strategy.mode", "full", MODES),
        (
            {"sink": {"strategy": {"method": "swap"}}},
            "sink.strategy.method",
            "swap",
            "truncate_insert, exchange",
        ),
        (
            {"sink": {"strategy": {"merge_policy": "merge"}}},
            "sink.strategy.merge_policy",
            "merge",
            "delete_insert, upsert, shadow_swap",
        ),
        (
            {"sink": {"strategy": {"duplicate_policy": "first"}}},
            "sink.strategy.duplicate_policy",
            "first",
            "fail, keep_last",
        ),
        (
            {"sink": {"strategy": {"native_mode": "always"}}},
            "sink.strategy.native_mode",
            "always",
            "auto, required, disabled",
        ),
        (
            {"sink": {"strategy": {"on_schema_change": "ignore"}}},
            "sink.strategy.on_schema_change",
            "ignore",
            "fail, add_columns, sync",
        ),
        ({"source": {"type": "mysql"}}, "source.type", "mysql", "postgres, delta"),
        ({"sink": {"type": "mssql"}}, "sink.type", "mssql", "postgres, delta"),
        ({"source": {"connection_type": "aws"}}, "source.connection_type", "aws", "env, vault"),
        (
            {"source": {"options": {"incremental_strategy": "wal"}}},
            "source.options.incremental_strategy",
            "wal",
            "full, column, xmin, cdc",
        ),
        (
            {"source": {"options": {"on_null_cursor": "skip"}}},
            "source.options.on_null_cursor",
            "skip",
            "exclude, include, fail",
        ),
        (
            {"source": {"options": {"snapshot": "always"}}},
            "source.options.snapshot",
            "always",
            "initial, never",
        ),
        (
            {"source": {"options": {"on_truncate": "ignore"}}},
            "source.options.on_truncate",
            "ignore",
            "apply, fail",
        ),
    ],
)
def test_wrong_choice_lists_the_allowed_values(
    tmp_path: Path, overrides: dict[str, Any], field: str, value: str, allowed: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    problems = problems_of(spec)
    expected = f"{spec}: pipeline 'landing_orders': field '{field}': '{value}' is not allowed; use one of: {allowed}"
    assert expected in problems
    assert len(problems) == 1, problems


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"source": {"connection_id": True}},
            "source.connection_id",
            "must be a string, got bool True",
        ),
        (
            {"sink": {"strategy": {"custom_predicate": False}}},
            "sink.strategy.custom_predicate",
            "must be a string, got bool False",
        ),
        ({"description": ["a", "b"]}, "description", "must be a string, got list ['a', 'b']"),
        (
            {"source": {"table": ["public", "orders"]}},
            "source.table",
            "must be a mapping, got list ['public', 'orders']",
        ),
        (
            {"sink": {"strategy": "full_refresh"}},
            "sink.strategy",
            "must be a mapping, got str 'full_refresh'",
        ),
        (
            {"source": {"options": ["full"]}},
            "source.options",
            "must be a mapping, got list ['full']",
        ),
        (
            {"source": {"options": {"target_batch_size": 0}}},
            "source.options.target_batch_size",
            "must be a positive integer, got int 0",
        ),
        (
            {"source": {"options": {"max_changes_per_run": -5}}},
            "source.options.max_changes_per_run",
            "must be a positive integer, got int -5",
        ),
        (
            {"source": {"options": {"target_batch_size": "1000"}}},
            "source.options.target_batch_size",
            "must be a positive integer, got str '1000'",
        ),
        (
            {"source": {"options": {"target_batch_size": True}}},
            "source.options.target_batch_size",
            "must be a positive integer, got bool True",
        ),
        (
            {"sink": {"strategy": {"only_new_rows": "yes"}}},
            "sink.strategy.only_new_rows",
            "must be true or false, got str 'yes'",
        ),
        (
            {"source": {"options": {"reset": 1}}},
            "source.options.reset",
            "must be true or false, got int 1",
        ),
        (
            {"sink": {"strategy": {"unique_key": []}}},
            "sink.strategy.unique_key",
            "must be a non-empty list of column names, got list []",
        ),
        (
            {"sink": {"strategy": {"unique_key": ["id", 7]}}},
            "sink.strategy.unique_key",
            "must be a non-empty list of column names, got list ['id', 7]",
        ),
        (
            {"sink": {"strategy": {"unique_key": {"id": 1}}}},
            "sink.strategy.unique_key",
            "must be a non-empty list of column names",
        ),
        (
            {"tags": ["sales"]},
            "tags",
            "must be a mapping of tag names to string values, e.g. {domain: sales}",
        ),
        ({"tags": {"domain": None}}, "tags", "must be a mapping of tag names to string values"),
        ({"tags": {"domain": {"a": 1}}}, "tags", "must be a mapping of tag names to string values"),
        (
            {"schedule": ["0 * * * *"]},
            "schedule",
            "must be a cron string or a mapping with `cron` and `timezone`",
        ),
        (
            {"freshness": 2},
            "freshness",
            "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after",
        ),
        (
            {"freshness": {"warn_after": "1h"}},
            "freshness",
            "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after",
        ),
        (
            {"freshness": {"fail_after": "1h", "warn": "30m"}},
            "freshness",
            "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after",
        ),
        (
            {"owners": {"team": "data"}},
            "owners",
            "must be a list of owners, e.g. [team:data-platform, ana@example.com]",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, overrides: dict[str, Any], field: str, message: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    prefix = f"{spec}: pipeline 'landing_orders': field '{field}': "
    problems = problems_of(spec)
    assert problems[0].startswith(prefix + message), problems
    # A required field of the wrong type is also reported as missing; nothing else is.
    assert problems[1:] in ([], [prefix + "is required for type postgres (a connection name)"])


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"source": DROP}, "source", "is required (a mapping)"),
        ({"sink": DROP}, "sink", "is required (a mapping)"),
        ({"sink": {"strategy": DROP}}, "sink.strategy", "is required (a mapping)"),
        (
            {"source": {"table": DROP}},
            "source.table",
            "is required (a mapping), or give source.query (one SELECT)",
        ),
        ({"sink": {"table": {"schema": DROP}}}, "sink.table.schema", "is required"),
        ({"sink": {"table": DROP}}, "sink.table", "is required (a mapping)"),
        ({"sink": {"table": {"name": ""}}}, "sink.table.name", "is required"),
        ({"source": {"table": {"schema": ""}}}, "source.table.schema", "is required"),
        (
            {"source": {"connection_id": ""}},
            "source.connection_id",
            "is required for type postgres (a connection name)",
        ),
        (
            {"sink": {"strategy": {"mode": ""}}},
            "sink.strategy.mode",
            f"is required; one of: {MODES}",
        ),
        ({"source": {"table": {"name": DROP}}}, "source.table.name", "is required"),
        (
            {"source": {"connection_id": DROP}},
            "source.connection_id",
            "is required for type postgres (a connection name)",
        ),
        (
            {"sink": {"connection_id": DROP}},
            "sink.connection_id",
            "is required for type postgres (a connection name)",
        ),
        (
            {"sink": {"strategy": {"mode": DROP}}},
            "sink.strategy.mode",
            f"is required; one of: {MODES}",
        ),
        ({"source": {"type": DROP}}, "source.type", "is required; one of: postgres, delta"),
        (
            {"source": {"type": "delta", "connection_id": DROP, "table": DROP}},
            "source.path",
            "is required for type delta (a folder or object-store URI)",
        ),
        ({"schedule": {"timezone": "UTC"}}, "schedule.cron", "is required"),
    ],
)
def test_missing_required_fields(
    tmp_path: Path, overrides: dict[str, Any], field: str, message: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    problems = problems_of(spec)
    assert any(p.endswith(f"field '{field}': {message}") for p in problems), problems
    assert all(p.startswith(f"{spec}: pipeline '") for p in problems), problems


def _section(data: dict[str, Any], problems: list[str]) -> Section:
    return Section(data, "spec", lambda field, message: problems.append(f"{field}: {message}"))


def test_choice_returns_one_of_the_choices_or_the_default() -> None:
    problems: list[str] = []
    section = _section({"mode": "b", "bad": "z", "number": 1}, problems)
    assert section.choice("mode", ("a", "b"), default="a") == "b"
    assert section.choice("missing", ("a", "b"), default="a") == "a"
    assert section.choice("bad", ("a", "b"), default="a") == "a"
    assert section.choice("number", ("1", "2"), default="2") == "1"  # numbers are read as text
    assert section.choice("absent", ("a", "b"), required=True) is None
    assert problems == [
        "spec.bad: 'z' is not allowed; use one of: a, b",
        "spec.absent: is required; one of: a, b",
    ]


def test_entries_read_each_named_mapping_in_order() -> None:
    problems: list[str] = []
    top = _section({"groups": {"a": {"x": 1}, "b": None, "c": "text"}}, problems)
    found = []
    for name, entry in top.entries("groups", required=True):
        found.append((name, entry.raw("x") if entry else None))
        problems.append(f"read {name}")  # each entry's problems come before the next entry's
    assert found == [("a", 1), ("b", None), ("c", None)]
    assert problems == [
        "read a",
        "spec.groups.b: is required (a mapping)",
        "read b",
        "spec.groups.c: must be a mapping, got str 'text'",
        "read c",
    ]
    assert list(_section({}, problems).entries("groups")) == []

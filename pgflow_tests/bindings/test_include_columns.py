"""source.options.include_columns end to end, through the IO managers: the target holds exactly
the listed columns of the source, for each read strategy, into Postgres and into Delta; a
listed column the source lacks fails the run naming the field."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl
import pytest

from pgflow_tests.bindings.checks.support import (
    MERGE,
    delta_pipeline,
    failure_message,
    materialize,
    pipeline,
    project_of,
)
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import execute, fetch

# Source items: id, name, price, added (items_table); each case lists some of them.
CASES = [
    pytest.param({}, {"mode": "full_refresh"}, ("id", "name"), id="full_refresh"),
    pytest.param(
        {"incremental_strategy": "column", "incremental_column": "added"},
        MERGE,
        ("id", "price", "added"),
        id="merge-column-cursor",
    ),
    pytest.param({"incremental_strategy": "xmin"}, MERGE, ("id", "name"), id="merge-xmin"),
]
# Later writes the next run must carry over: new rows and updates, in listed and other columns.
CHANGES = """
INSERT INTO items (id, name, price) VALUES (51, 'item 51', 9.99), (52, 'item 52', NULL);
UPDATE items SET name = 'renamed', price = price + 1, added = now() + interval '1 hour'
WHERE id IN (3, 4);
"""


def columns_of(uri: str, schema: str) -> tuple[str, ...]:
    rows = fetch(
        uri,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'items' ORDER BY ordinal_position",
        (schema,),
    )
    return tuple(r[0] for r in rows)


def rows_of(uri: str, table: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return fetch(uri, f"SELECT {', '.join(columns)} FROM {table} ORDER BY id")


@pytest.mark.parametrize(("options", "strategy", "included"), CASES)
def test_a_postgres_target_holds_only_the_included_columns(
    env: Env,
    instance: dg.DagsterInstance,
    options: dict[str, str],
    strategy: dict[str, Any],
    included: tuple[str, ...],
) -> None:
    source = {"options": {**options, "include_columns": list(reversed(included))}}
    project = project_of(env, pipeline(strategy, source=source))
    for changes in ("", CHANGES):
        execute(env.source_uri, changes or "SELECT")
        assert materialize(project, instance).success
        assert columns_of(env.sink_uri, "landing") == included  # in the source's order
        assert rows_of(env.sink_uri, "landing.items", included) == rows_of(
            env.source_uri, "public.items", included
        )


def test_a_delta_target_holds_only_the_included_columns(
    env: Env, instance: dg.DagsterInstance
) -> None:
    spec = delta_pipeline(env, {"mode": "full_refresh"})
    spec["source"]["options"] = {"include_columns": ["name", "id"]}
    project = project_of(env, spec)
    assert materialize(project, instance).success
    written = pl.read_delta(str(env.lake / "items")).sort("id")
    assert written.columns == ["id", "name"]
    assert list(written.iter_rows()) == rows_of(env.source_uri, "public.items", ("id", "name"))


def test_a_listed_column_missing_at_the_source_fails_the_run_naming_it(
    env: Env, instance: dg.DagsterInstance
) -> None:
    source = {"options": {"include_columns": ["id", "colour"]}}
    project = project_of(env, pipeline({"mode": "full_refresh"}, source=source))
    result = materialize(project, instance, raise_on_error=False)
    assert not result.success
    message = failure_message(result, "landing__items")
    (spec,) = project.pipelines
    assert (
        f"pipeline 'landing_items' ({spec.file}): field 'source.options.include_columns': "
        "'colour' not found in public.items; its columns are: id, name, price, added"
    ) in message
    assert fetch(env.sink_uri, "SELECT to_regclass('landing.items')") == [(None,)]

"""The checks of update and delete pipelines: their targets are not copies of their sources,
so neither row-count nor value parity is offered; the key and schema checks are."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.checks.definitions import check_names
from pgflow.bindings.checks.names import SCHEMA, UNIQUE_KEY
from pgflow_tests.bindings.checks.support import pipeline, project_of, run_checks
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import execute


def test_update_and_delete_get_no_parity_checks(env: Env) -> None:
    project = project_of(
        env,
        {**pipeline({"mode": "update", "unique_key": ["id"]}), "name": "upd"},
        {
            **pipeline(
                {"mode": "delete", "unique_key": ["id"]},
                sink={"table": {"schema": "landing", "name": "gone"}},
            ),
            "name": "del",
        },
    )
    assert [check_names(p) for p in project.pipelines] == [[UNIQUE_KEY, SCHEMA]] * 2


def test_the_schema_check_of_an_update_accepts_target_only_columns(
    env: Env, instance: dg.DagsterInstance
) -> None:
    execute(
        env.sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.items (id int PRIMARY KEY, name text,"
        " price numeric(8,2), added timestamptz, origin text)",
    )
    project = project_of(env, pipeline({"mode": "update", "unique_key": ["id"]}))
    found = run_checks(project, instance)
    assert found[SCHEMA].passed, found[SCHEMA].description
    merge = project_of(env, pipeline({"mode": "incremental_merge", "unique_key": ["id"]}))
    assert "dropped at the source: origin" in (
        run_checks(merge, instance)[SCHEMA].description or ""
    )

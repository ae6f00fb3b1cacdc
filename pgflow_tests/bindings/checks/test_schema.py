"""The schema check: drift the next load absorbs warns, drift it refuses is an error with the fix."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.checks.names import SCHEMA
from pgflow_tests.bindings.checks.support import (
    MERGE,
    figures,
    materialize,
    pipeline,
    project_of,
    run_checks,
)
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import execute


def test_schema_drift_warns_when_absorbed_and_errors_when_the_load_will_fail(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE))  # on_schema_change: add_columns (default)
    materialize(project, instance)
    execute(env.source_uri, "ALTER TABLE items ADD COLUMN note text")
    added = run_checks(project, instance, SCHEMA)[SCHEMA]
    assert not added.passed and added.severity == dg.AssetCheckSeverity.WARN
    assert added.description == (
        "added at the source: note; the next load absorbs it (on_schema_change: add_columns "
        "adds the new columns)"
    )
    assert figures(added)["added_at_source"] == "note"
    materialize(project, instance)  # it does absorb it
    assert run_checks(project, instance, SCHEMA)[SCHEMA].passed

    execute(
        env.source_uri,
        "ALTER TABLE items DROP COLUMN note; ALTER TABLE items ALTER COLUMN price TYPE text",
    )
    refused = run_checks(project, instance, SCHEMA)[SCHEMA]
    assert not refused.passed and refused.severity == dg.AssetCheckSeverity.ERROR
    text = refused.description or ""
    assert text.startswith(
        "the next load will fail: dropped at the source: note; retyped at the source: "
        "price (numeric(8,2) -> text)"
    )
    assert "Fix: set sink.strategy.on_schema_change: sync" in text
    assert figures(refused)["dropped_at_source"] == "note"
    assert not materialize(project, instance, raise_on_error=False).success  # it does fail

    synced = project_of(env, pipeline({**MERGE, "on_schema_change": "sync"}))
    absorbed = run_checks(synced, instance, SCHEMA)[SCHEMA]
    assert absorbed.severity == dg.AssetCheckSeverity.WARN
    assert "on_schema_change: sync adds, drops and retypes target columns" in (
        absorbed.description or ""
    )
    materialize(synced, instance)
    assert run_checks(synced, instance, SCHEMA)[SCHEMA].passed


def test_schema_with_policy_fail_refuses_new_columns(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline({**MERGE, "on_schema_change": "fail"}))
    materialize(project, instance)
    execute(env.source_uri, "ALTER TABLE items ADD COLUMN note text")
    found = run_checks(project, instance, SCHEMA)[SCHEMA]
    assert not found.passed and found.severity == dg.AssetCheckSeverity.ERROR
    assert "Fix: set sink.strategy.on_schema_change: add_columns or sync (it is fail)" in (
        found.description or ""
    )


def test_schema_compares_only_the_included_columns(env: Env, instance: dg.DagsterInstance) -> None:
    included = {"options": {"include_columns": ["id", "price"]}}
    project = project_of(env, pipeline(MERGE, source=included))
    materialize(project, instance)
    agreed = run_checks(project, instance, SCHEMA)[SCHEMA]
    assert agreed.passed, agreed.description  # name and added are not the load's columns
    assert figures(agreed)["source_columns"] == 2

    execute(env.source_uri, "ALTER TABLE items DROP COLUMN name")  # not included: no drift
    assert run_checks(project, instance, SCHEMA)[SCHEMA].passed

    execute(env.source_uri, "ALTER TABLE items DROP COLUMN price")
    missing = run_checks(project, instance, SCHEMA)[SCHEMA]
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.ERROR
    assert missing.description == (
        "the next load will fail: source.options.include_columns: 'price' not found in "
        "public.items; its columns are: id, added"
    )

"""Which checks each pipeline gets, and what they say before the first load."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.checks.definitions import check_names, pipeline_checks
from pgflow.bindings.checks.names import (
    FRESHNESS,
    ROW_COUNT_PARITY,
    SCHEMA,
    SLOT_HEALTH,
    UNIQUE_KEY,
    VALUE_PARITY,
)
from pgflow_tests.bindings.checks.support import MERGE, pipeline, project_of, run_checks
from pgflow_tests.bindings.conftest import Env


def test_checks_before_the_first_load_fail_softly_and_say_why(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE, freshness="1h"))
    found = run_checks(project, instance)
    assert set(found) == {UNIQUE_KEY, ROW_COUNT_PARITY, SCHEMA, FRESHNESS, VALUE_PARITY}
    for name in (UNIQUE_KEY, SCHEMA):
        assert not found[name].passed and found[name].severity == dg.AssetCheckSeverity.WARN
        assert "target landing.items does not exist yet" in (found[name].description or "")
    for name in (ROW_COUNT_PARITY, VALUE_PARITY):
        parity = found[name]
        assert not parity.passed and parity.severity == dg.AssetCheckSeverity.WARN
        assert "never materialized" in (parity.description or "")
    fresh = found[FRESHNESS]
    assert not fresh.passed and fresh.severity == dg.AssetCheckSeverity.ERROR
    assert (fresh.description or "").startswith("never materialized (fail after 1h)")


def test_which_checks_each_pipeline_gets(env: Env) -> None:
    project = project_of(
        env,
        {**pipeline({"mode": "full_refresh"}), "name": "full"},
        {
            **pipeline(
                {"mode": "incremental_append"},
                sink={"table": {"schema": "landing", "name": "log"}},
            ),
            "name": "log",
        },
    )
    full, log = project.pipelines
    assert check_names(full) == [ROW_COUNT_PARITY, SCHEMA, VALUE_PARITY]
    assert check_names(log) == [SCHEMA]  # a plain append grows by every read
    checks = {c.node_def.name: c for c in pipeline_checks(project)}
    assert set(checks) == {"full_checks", "log_checks"}
    specs = {s.name: s for s in checks["full_checks"].check_specs}
    assert "within 1.00% of the source's live count" in (specs[ROW_COUNT_PARITY].description or "")
    assert SLOT_HEALTH not in specs

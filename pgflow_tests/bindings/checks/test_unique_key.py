"""The unique_key check on a real merge target: passes, then fails on duplicate keys and on a
key column the target lost."""

from __future__ import annotations

import dagster as dg

from pgflow.bindings.checks.names import ROW_COUNT_PARITY, UNIQUE_KEY
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


def test_a_merge_target_passes_then_fails_on_duplicate_keys_and_extra_rows(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    found = run_checks(project, instance)
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
    assert figures(found[ROW_COUNT_PARITY]) == {
        "target_rows_from": "count",
        "ledger_rows": 50,
        "target_rows": 50,
        "source_rows": 50,
        "difference": 0,
        "tolerance": 0.01,
        "mode": "tolerance",
    }
    assert figures(found[UNIQUE_KEY]) == {
        "unique_key": "id",
        "duplicate_keys": 0,
        "duplicate_rows": 0,
        "examples": [],
        "enforced_by": "items_pkey",
    }
    assert found[UNIQUE_KEY].description == (
        "(id) is unique in target landing.items: unique index items_pkey enforces it"
    )

    # A target that lost its key constraint takes rows twice (e.g. a manual backfill).
    execute(
        env.sink_uri,
        "ALTER TABLE landing.items DROP CONSTRAINT items_pkey;"
        "INSERT INTO landing.items SELECT * FROM landing.items WHERE id <= 2;"
        "INSERT INTO landing.items SELECT DISTINCT ON (id) * FROM landing.items WHERE id = 2",
    )
    found = run_checks(project, instance, UNIQUE_KEY, ROW_COUNT_PARITY)
    unique = found[UNIQUE_KEY]
    assert not unique.passed and unique.severity == dg.AssetCheckSeverity.ERROR
    assert (unique.description or "").startswith(
        "2 value(s) of the key (id) occur more than once in target landing.items (5 rows), "
        "e.g. id=2 (3 rows); id=1 (2 rows)."
    )
    assert figures(unique) == {
        "unique_key": "id",
        "duplicate_keys": 2,
        "duplicate_rows": 5,
        "examples": [{"key": {"id": "2"}, "rows": 3}, {"key": {"id": "1"}, "rows": 2}],
    }
    # Rows pgflow did not write: the ledger of its loads says so, whatever the tolerance.
    parity = found[ROW_COUNT_PARITY]
    assert not parity.passed and parity.severity == dg.AssetCheckSeverity.ERROR
    assert figures(parity)["difference"] == 3 and figures(parity)["target_rows"] == 53
    assert "but pgflow's state counts 50 after the last load (+3)" in (parity.description or "")


def test_a_key_column_missing_from_the_target_is_an_error(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    execute(env.sink_uri, "ALTER TABLE landing.items RENAME COLUMN id TO item_id")
    found = run_checks(project, instance, UNIQUE_KEY)[UNIQUE_KEY]
    assert not found.passed and found.severity == dg.AssetCheckSeverity.ERROR
    assert (found.description or "").startswith(
        "key column(s) id of sink.strategy.unique_key are not in target landing.items"
    )

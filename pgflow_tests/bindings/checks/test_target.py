"""The target table as the checks read it: a dropped Postgres target, and a Delta target broken
behind pgflow's back."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest
from deltalake import write_deltalake

from pgflow.bindings.checks.names import ROW_COUNT_PARITY, SCHEMA, SLOT_HEALTH, UNIQUE_KEY
from pgflow_tests.bindings.checks.support import (
    MERGE,
    delta_pipeline,
    figures,
    materialize,
    pipeline,
    project_of,
    run_checks,
)
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import drop_slots, execute, slot_name_for


@pytest.fixture
def slot(env: Env) -> Iterator[str]:
    name = slot_name_for(env.source_uri)
    yield name
    drop_slots(env.source_uri, name)


def test_a_dropped_target_after_a_load_is_an_error(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    execute(env.sink_uri, "DROP TABLE landing.items")
    found = run_checks(project, instance, UNIQUE_KEY, ROW_COUNT_PARITY)
    for evaluation in found.values():
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "although the asset was materialized" in (evaluation.description or "")


def test_delta_target_checks(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, delta_pipeline(env, MERGE))
    materialize(project, instance)
    found = run_checks(project, instance)
    assert set(found) == {UNIQUE_KEY, ROW_COUNT_PARITY, SCHEMA}
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
    assert figures(found[ROW_COUNT_PARITY])["target_rows"] == 50

    # Someone appends rows behind pgflow's back: keys 1 and 2 twice.
    table = pl.read_delta(str(env.lake / "items")).filter(pl.col("id") <= 2)
    write_deltalake(str(env.lake / "items"), table, mode="append")
    execute(env.source_uri, "ALTER TABLE items ADD COLUMN note text")
    found = run_checks(project, instance)
    unique = found[UNIQUE_KEY]
    assert not unique.passed and unique.severity == dg.AssetCheckSeverity.ERROR
    assert figures(unique)["duplicate_keys"] == 2 and figures(unique)["duplicate_rows"] == 4
    assert "Delta table" in (unique.description or "")
    parity = found[ROW_COUNT_PARITY]
    assert not parity.passed and figures(parity)["target_rows"] == 52  # from the Delta log
    schema = found[SCHEMA]
    assert schema.severity == dg.AssetCheckSeverity.WARN and not schema.passed
    assert (schema.description or "").startswith("added at the source: note; the next load")

    execute(env.source_uri, "ALTER TABLE items DROP COLUMN name")
    dropped = run_checks(project, instance, SCHEMA)[SCHEMA]
    assert not dropped.passed and dropped.severity == dg.AssetCheckSeverity.ERROR
    assert "dropped at the source: name" in (dropped.description or "")
    assert "reset: true" in (dropped.description or "")


def test_delta_cdc_target_checks_with_soft_deletes(
    env: Env, instance: dg.DagsterInstance, slot: str
) -> None:
    """The soft-delete column is pgflow's, not a column the source dropped; stamped rows are
    not counted; a retyped source column stops CDC, so it is an ERROR."""
    options = {"incremental_strategy": "cdc", "slot_name": slot, "deleted_column": "_deleted_at"}
    spec = delta_pipeline(env, MERGE)
    spec["source"]["options"] = options
    project = project_of(env, spec)
    materialize(project, instance)
    execute(env.source_uri, "DELETE FROM items WHERE id > 40")
    materialize(project, instance)
    found = run_checks(project, instance)
    assert set(found) == {UNIQUE_KEY, ROW_COUNT_PARITY, SCHEMA, SLOT_HEALTH}
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
    assert figures(found[ROW_COUNT_PARITY])["target_rows"] == 40

    execute(env.source_uri, "ALTER TABLE items ALTER COLUMN price TYPE numeric(12,3)")
    retyped = run_checks(project, instance, SCHEMA)[SCHEMA]
    assert not retyped.passed and retyped.severity == dg.AssetCheckSeverity.ERROR
    description = retyped.description or ""
    assert "retyped at the source: price" in description and "reset: true" in description

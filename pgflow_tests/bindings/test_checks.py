"""The asset checks of real pipelines: materialized into real Postgres targets and Delta
tables with the real IO managers, broken for real, and checked in a real Dagster instance."""

from __future__ import annotations

import time

import dagster as dg
import polars as pl
import pytest
import yaml
from deltalake import write_deltalake

from pgflow.bindings.assets import pipeline_asset
from pgflow.bindings.checks import (
    FRESHNESS,
    ROW_COUNT_PARITY,
    SCHEMA,
    SLOT_HEALTH,
    UNIQUE_KEY,
    VALUE_PARITY,
    Clock,
    check_names,
    freshness,
    human_bytes,
    pipeline_checks,
)
from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow.config.model import FreshnessSpec, Project
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import execute

ITEMS_KEY = dg.AssetKey(["landing", "items"])


def pipeline(strategy: dict, **extra: object) -> dict:
    """The items table of "shop" into landing.items of "warehouse" (or a Delta `sink`)."""
    spec: dict = {
        "source": {
            "type": "postgres",
            "connection_id": "shop",
            "table": {"schema": "public", "name": "items"},
        },
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "landing", "name": "items"},
            "strategy": strategy,
        },
    }
    for key, value in extra.items():
        if key in ("source", "sink"):
            spec[key].update(value)  # type: ignore[arg-type]
        else:
            spec[key] = value
    return spec


def project_of(env: Env, *specs: dict) -> Project:
    (env.specs / "pipelines.yaml").write_text(yaml.safe_dump({"pipelines": list(specs)}))
    return load_project(env.specs)


def materialize(
    project: Project, instance: dg.DagsterInstance, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """Every pipeline asset, without its checks (a test runs those when it wants)."""
    assets = [pipeline_asset(p) for p in project.pipelines]
    keys = [dg.AssetKey(list(p.asset_key)) for p in project.pipelines]
    return dg.materialize(
        [*assets, *pipeline_checks(project)],
        instance=instance,
        resources=build_definitions(project).resources,
        selection=dg.AssetSelection.assets(*keys).without_checks(),
        raise_on_error=raise_on_error,
    )


def run_checks(
    project: Project, instance: dg.DagsterInstance, *names: str, clock: Clock = time.time
) -> dict[str, dg.AssetCheckEvaluation]:
    """Run the named checks (default: all) of the project's only pipeline, nothing else."""
    (spec,) = project.pipelines
    key = dg.AssetKey(list(spec.asset_key))
    checks = [dg.AssetCheckKey(key, n) for n in (names or check_names(spec))]
    result = dg.materialize(
        [pipeline_asset(spec), *pipeline_checks(project, clock)],
        instance=instance,
        resources=build_definitions(project).resources,
        selection=dg.AssetSelection.checks(*checks),
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {c.name for c in checks}
    # The event log holds what the UI shows: the same results.
    for check in checks:
        record = instance.get_latest_asset_check_evaluation_record(check)
        assert record is not None and record.event is not None
        assert record.event.run_id == result.run_id
    return evaluations


def figures(evaluation: dg.AssetCheckEvaluation) -> dict[str, object]:
    return {k: v.value for k, v in evaluation.metadata.items()}


MERGE = {"mode": "incremental_merge", "unique_key": ["id"]}


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


def test_a_merge_target_passes_then_fails_on_duplicate_keys_and_extra_rows(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    found = run_checks(project, instance)
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
    assert figures(found[ROW_COUNT_PARITY]) == {
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
    parity = found[ROW_COUNT_PARITY]
    assert not parity.passed and parity.severity == dg.AssetCheckSeverity.WARN
    assert figures(parity)["difference"] == 3 and figures(parity)["target_rows"] == 53
    assert "outside tolerance" in (parity.description or "")


def test_row_count_tolerance_comes_from_the_spec(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline(MERGE, checks={"row_count_tolerance": 0.05}))
    materialize(project, instance)
    execute(env.sink_uri, "DELETE FROM landing.items WHERE id <= 2")  # 4% of 50
    within = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert within.passed, within.description
    assert "within tolerance" in (within.description or "")
    execute(env.sink_uri, "DELETE FROM landing.items WHERE id = 3")  # 6%
    outside = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not outside.passed and outside.severity == dg.AssetCheckSeverity.WARN
    assert figures(outside) == {
        "target_rows": 47,
        "source_rows": 50,
        "difference": -3,
        "tolerance": 0.05,
        "mode": "tolerance",
    }


def test_a_source_dropped_since_the_load_leaves_nothing_to_compare(
    env: Env, instance: dg.DagsterInstance
) -> None:
    """The source and the target are counted at the same time; a missing source is a soft
    failure that names it, whichever count ends first."""
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    execute(env.source_uri, "DROP TABLE items")
    parity = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not parity.passed and parity.severity == dg.AssetCheckSeverity.WARN
    assert parity.description == (
        "source table public.items on connection 'shop' not found: nothing to compare the "
        "target with"
    )


def test_row_count_is_exact_after_a_full_refresh(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline({"mode": "full_refresh"}))
    materialize(project, instance)
    latest = instance.get_latest_materialization_event(ITEMS_KEY)
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["pgflow/source_rows_exact"].value == 50

    # The source moving on does not matter: the target must equal the snapshot it loaded.
    execute(env.source_uri, "DELETE FROM items WHERE id > 40")
    exact = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert exact.passed, exact.description
    assert figures(exact)["mode"] == "exact" and figures(exact)["source_rows"] == 50

    execute(env.sink_uri, "DELETE FROM landing.items WHERE id = 1")  # one row off is too many
    broken = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.ERROR
    assert figures(broken) == {
        "target_rows": 49,
        "source_rows": 50,
        "difference": -1,
        "tolerance": 0.0,
        "mode": "exact",
    }
    assert "the source snapshot of the last load had 50" in (broken.description or "")


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


def test_a_dropped_target_after_a_load_is_an_error(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    execute(env.sink_uri, "DROP TABLE landing.items")
    found = run_checks(project, instance, UNIQUE_KEY, ROW_COUNT_PARITY)
    for evaluation in found.values():
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert "although the asset was materialized" in (evaluation.description or "")


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


def test_freshness_against_the_latest_materialization(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE, freshness={"warn_after": "1m", "fail_after": "1h"}))
    materialize(project, instance)
    latest = instance.get_latest_materialization_event(ITEMS_KEY)
    assert latest is not None

    def check_at(seconds_later: float) -> dg.AssetCheckEvaluation:
        def clock() -> float:
            return latest.timestamp + seconds_later

        return run_checks(project, instance, FRESHNESS, clock=clock)[FRESHNESS]

    fresh = check_at(30)
    assert fresh.passed, fresh.description
    assert fresh.description == "last materialized 30.0s ago (warn after 1m, fail after 1h)"

    late = check_at(61)
    assert not late.passed and late.severity == dg.AssetCheckSeverity.WARN
    assert late.description == (
        "last materialized 1m 1s ago (warn after 1m, fail after 1h): older than 1m; is its "
        "schedule or sensor running, do runs fail?"
    )
    assert figures(late) == {
        "last_materialization": pytest.approx(latest.timestamp),
        "age_seconds": 61.0,
        "warn_after": "1m",
        "fail_after": "1h",
        "state": "warn",
    }

    stale = check_at(2 * 3600)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert figures(stale)["state"] == "fail"
    assert "older than 1h" in (stale.description or "")


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 1024, 300 * 1024 + 512, 5 * 1024**2, 1024**3)] == [
        "512 bytes",
        "1.0 kB",
        "300.5 kB",
        "5.0 MB",
        "1.0 GB",
    ]


def test_the_freshness_rule() -> None:
    spec = FreshnessSpec(fail_after=_td(3600), warn_after=_td(600))
    assert freshness(spec, None, 1000.0).level == "fail"
    assert freshness(spec, 1000.0, 1000.0 + 600).level == "fresh"  # at the edge: not yet
    assert freshness(spec, 1000.0, 1000.0 + 601).level == "warn"
    assert freshness(spec, 1000.0, 1000.0 + 3601).level == "fail"
    assert freshness(FreshnessSpec(fail_after=_td(60)), 0.0, 59.0).level == "fresh"
    assert freshness(spec, 0.0, 7500.0).describe() == (
        "last materialized 2h 5m ago (warn after 10m, fail after 1h)"
    )


def _td(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)


def delta_pipeline(env: Env, strategy: dict) -> dict:
    sink = {"type": "delta", "path": str(env.lake / "items"), "strategy": strategy}
    spec = pipeline(strategy)
    spec["sink"] = sink
    return spec


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


def test_delta_full_refresh_counts_exactly(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, delta_pipeline(env, {"mode": "full_refresh"}))
    materialize(project, instance)
    execute(env.source_uri, "DELETE FROM items WHERE id > 45")
    exact = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert exact.passed and figures(exact)["mode"] == "exact", exact.description
    materialize(project, instance)
    assert figures(run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]) == {
        "target_rows": 45,
        "source_rows": 45,
        "difference": 0,
        "tolerance": 0.0,
        "mode": "exact",
    }


def test_a_delta_source_is_counted_from_its_log(env: Env, instance: dg.DagsterInstance) -> None:
    lake = env.lake / "prices"
    frame = pl.DataFrame({"id": range(1, 21), "price": range(20)})
    write_deltalake(str(lake), frame)
    spec = {
        "source": {"type": "delta", "path": str(lake)},
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "landing", "name": "prices"},
            "strategy": MERGE,
        },
    }
    project = project_of(env, spec)
    assert check_names(project.pipelines[0]) == [UNIQUE_KEY, ROW_COUNT_PARITY]  # no schema
    materialize(project, instance)
    assert run_checks(project, instance)[ROW_COUNT_PARITY].passed
    write_deltalake(
        str(lake), pl.DataFrame({"id": range(21, 26), "price": range(5)}), mode="append"
    )
    behind = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not behind.passed and behind.severity == dg.AssetCheckSeverity.WARN
    assert (figures(behind)["target_rows"], figures(behind)["source_rows"]) == (20, 25)


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

"""Every sink mode through `dagster asset materialize`, twice, with source changes between.

One spec folder holds one pipeline per mode, all reading one source table into their own
targets. After the second run each target is compared with its expected rows, computed in SQL
from the source snapshots of the two runs (not by pgflow's own code).
"""

from __future__ import annotations

import dagster as dg
import psycopg
import yaml

from pgflow_tests.bindings.conftest import DagsterSetup
from pgflow_tests.bindings.test_definitions_cli import instance, materialize, rows

MODES: dict[str, dict] = {
    "truncate_insert": {"mode": "full_refresh"},
    "exchange": {"mode": "full_refresh", "method": "exchange"},
    "append_new": {"mode": "incremental_append", "only_new_rows": True, "unique_key": ["id"]},
    "delete_insert": {"mode": "incremental_merge", "unique_key": ["id"]},
    "upsert": {"mode": "incremental_merge", "merge_policy": "upsert", "unique_key": ["id"]},
    "shadow_swap": {
        "mode": "incremental_merge",
        "merge_policy": "shadow_swap",
        "unique_key": ["id"],
    },
    "replace": {"mode": "replace", "custom_predicate": "id > 0"},
    "partition_replace": {"mode": "partition_replace", "partition_column": "price"},
}


def pipeline(name: str, strategy: dict) -> dict:
    return {
        "source": {
            "type": "postgres",
            "connection_id": "shop",
            "table": {"schema": "public", "name": "items"},
        },
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "modes", "name": name},
            "strategy": strategy,
        },
    }


# The source between the runs: rows 1-10 change, 291-300 go away, 301-320 arrive.
CHANGE = """
UPDATE items SET name = name || ' v2' WHERE id <= 10;
DELETE FROM items WHERE id > 290;
INSERT INTO items (id, name, price) SELECT g, 'item ' || g, g * 1.25 FROM generate_series(301, 320) g;
"""
COLUMNS = "id, name, price"


def expected(mode: str, first: list[tuple], second: list[tuple]) -> list[tuple]:
    """The target each mode must hold after run 1 (first) and run 2 (second)."""
    second_ids = {r[0] for r in second}
    if mode in ("truncate_insert", "exchange", "replace"):
        return second  # replace's predicate covers every row
    if mode == "append_new":
        first_ids = {r[0] for r in first}
        return sorted(first + [r for r in second if r[0] not in first_ids])
    if mode in ("delete_insert", "upsert", "shadow_swap"):
        return sorted(second + [r for r in first if r[0] not in second_ids])
    if mode == "partition_replace":  # each staged price replaces that price's rows
        second_prices = {r[2] for r in second}
        return sorted(second + [r for r in first if r[2] not in second_prices])
    raise AssertionError(mode)


def test_every_sink_mode_materializes_through_the_cli(dagster_setup: DagsterSetup):
    setup = dagster_setup
    specs = {"pipelines": [pipeline(name, strategy) for name, strategy in MODES.items()]}
    (setup.specs / "items.yaml").write_text(yaml.safe_dump(specs))
    query = f"SELECT {COLUMNS} FROM {{}} ORDER BY id"

    first_run = materialize(setup, "*")
    assert first_run.returncode == 0, first_run.stderr[-8000:]
    # Many assets in one run: a process per step, so the loads overlap.
    assert "Multiprocess executor" in first_run.stderr
    first = rows(setup.source_uri, query.format("items"))
    for name in MODES:
        assert rows(setup.sink_uri, query.format(f"modes.{name}")) == first, name

    with psycopg.connect(setup.source_uri, autocommit=True) as conn:
        conn.execute(CHANGE)
    second_run = materialize(setup, "*")
    assert second_run.returncode == 0, second_run.stderr[-3000:]
    second = rows(setup.source_uri, query.format("items"))
    for name in MODES:
        target = rows(setup.sink_uri, query.format(f"modes.{name}"))
        assert target == expected(name, first, second), name

    with instance(setup) as inst:
        event = inst.get_latest_materialization_event(dg.AssetKey(["modes", "replace"]))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata["pgflow/rows_deleted"].value == len(first)

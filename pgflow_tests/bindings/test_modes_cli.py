"""The update and delete modes and the partial upsert through `dagster asset materialize -m
pgflow.definitions`, as users run them: rows in the targets, metadata, and a failed
on_unmatched: fail run that wrote nothing."""

from __future__ import annotations

import dagster as dg
import psycopg

from pgflow_tests.bindings.conftest import DagsterSetup
from pgflow_tests.bindings.test_definitions_cli import instance, materialize, rows

SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {options}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: {name}}}
  strategy: {strategy}
"""

# Three targets made by hand: ids 1-100 (update, upsert) and 1-400 (delete), stale values.
TARGETS = """
CREATE SCHEMA landing;
CREATE TABLE landing.items_upd (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2),
    added timestamptz, origin text);
INSERT INTO landing.items_upd SELECT g, 'old', 0, NULL, 'crm' FROM generate_series(1, 100) g;
CREATE TABLE landing.items_ups (LIKE landing.items_upd INCLUDING ALL);
ALTER TABLE landing.items_ups ALTER COLUMN origin SET DEFAULT 'local';
INSERT INTO landing.items_ups SELECT * FROM landing.items_upd;
CREATE TABLE landing.items_del (LIKE landing.items_upd INCLUDING ALL);
INSERT INTO landing.items_del SELECT g, 'old', 0, NULL, 'crm' FROM generate_series(1, 400) g;
"""


def metadata_of(setup: DagsterSetup, name: str) -> dict:
    with instance(setup) as inst:
        event = inst.get_latest_materialization_event(dg.AssetKey(["landing", name]))
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def write_specs(setup: DagsterSetup, on_unmatched: str = "ignore") -> None:
    (setup.specs / "items.yaml").unlink()
    specs = {
        "items_upd": ("{}", f"{{mode: update, unique_key: [id], on_unmatched: {on_unmatched}}}"),
        "items_del": ("{include_columns: [id]}", "{mode: delete, unique_key: [id]}"),
        "items_ups": (
            "{}",
            "{mode: incremental_merge, unique_key: [id], merge_policy: upsert,"
            " update_columns: [price]}",
        ),
    }
    for name, (options, strategy) in specs.items():
        spec = SPEC.format(options=options, name=name, strategy=strategy)
        (setup.specs / f"{name}.yaml").write_text(spec)


def test_update_delete_and_partial_upsert_through_the_cli(dagster_setup: DagsterSetup) -> None:
    setup = dagster_setup
    with psycopg.connect(setup.sink_uri, autocommit=True) as conn:
        conn.execute(TARGETS)
    write_specs(setup)
    result = materialize(setup, "landing/items_upd,landing/items_del,landing/items_ups")
    assert result.returncode == 0, result.stderr[-3000:]

    # update: ids 1-100 take the source's values, their origin stays; 101-300 not inserted
    assert rows(
        setup.sink_uri,
        "SELECT count(*), count(*) FILTER (WHERE name = 'item ' || id AND price = id * 1.25"
        " AND origin = 'crm'), max(id) FROM landing.items_upd",
    ) == [(100, 100, 100)]
    updated = metadata_of(setup, "items_upd")
    assert updated["pgflow/strategy"] == "update"
    assert updated["pgflow/rows_written"] == 100 and updated["pgflow/unmatched_keys"] == 200
    assert updated["dagster/row_count"] == 100
    assert updated["pgflow/batches"] == 1 and updated["pgflow/avg_batch_rows"] == 100.0
    assert updated["pgflow/write_seconds"] > 0
    assert "pgflow/source_rows_exact" not in updated  # the target is no copy of the source

    # delete: the source's 300 ids are gone from the target, 301-400 stay
    assert rows(setup.sink_uri, "SELECT count(*), min(id) FROM landing.items_del") == [(100, 301)]
    deleted = metadata_of(setup, "items_del")
    assert deleted["pgflow/rows_deleted"] == 300 and deleted["pgflow/unmatched_keys"] == 0
    assert deleted["dagster/row_count"] == 100

    # partial upsert: price updated, the name kept on ids 1-100; 101-300 inserted whole
    assert rows(
        setup.sink_uri,
        "SELECT id <= 100, count(*), count(*) FILTER (WHERE price = id * 1.25),"
        " count(*) FILTER (WHERE name = 'old'), min(origin) FROM landing.items_ups"
        " GROUP BY 1 ORDER BY 1",
    ) == [(False, 200, 200, 0, "local"), (True, 100, 100, 100, "crm")]
    assert metadata_of(setup, "items_ups")["pgflow/rows_written"] == 300


def test_on_unmatched_fail_fails_the_run_and_writes_nothing(dagster_setup: DagsterSetup) -> None:
    setup = dagster_setup
    with psycopg.connect(setup.sink_uri, autocommit=True) as conn:
        conn.execute(TARGETS)
    write_specs(setup, on_unmatched="fail")
    result = materialize(setup, "landing/items_upd")
    assert result.returncode != 0
    assert "UnmatchedKeys: mode update into landing.items_upd: 200 staged key(s) (" in (
        result.stderr
    )
    assert "on_unmatched is fail. Nothing was written" in result.stderr
    assert rows(setup.sink_uri, "SELECT DISTINCT name FROM landing.items_upd") == [("old",)]

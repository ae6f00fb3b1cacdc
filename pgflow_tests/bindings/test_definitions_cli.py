"""`dagster asset materialize -m pgflow.definitions` as users run it: a subprocess, the shipped
dagster.yaml (Postgres instance storage), connections from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import dagster as dg
import psycopg

from pgflow_tests.bindings.conftest import PIPELINE_YAML, REPO, DagsterSetup, items_table

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def materialize(
    setup: DagsterSetup, selection: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "pgflow.definitions",
            "--select",
            selection,
            *extra,
        ],
        env=setup.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(uri: str, query: str) -> list[tuple]:
    with psycopg.connect(uri) as conn:
        return conn.execute(query).fetchall()


@contextmanager
def instance(setup: DagsterSetup) -> Iterator[dg.DagsterInstance]:
    # The instance reads its storage credentials from the environment, as in production.
    with patch.dict(os.environ, setup.env), dg.DagsterInstance.from_config(str(setup.home)) as inst:
        yield inst


def latest_materialization(setup: DagsterSetup) -> dg.AssetMaterialization:
    with instance(setup) as inst:
        event = inst.get_latest_materialization_event(dg.AssetKey(["landing", "items"]))
        assert event is not None and event.asset_materialization is not None
        return event.asset_materialization


def test_cli_materializes_the_asset_into_the_sink_with_metadata(dagster_setup: DagsterSetup):
    setup = dagster_setup
    first = materialize(setup, "landing/items")
    assert first.returncode == 0, first.stderr[-3000:]
    # One asset and its checks run in the run's process: no step process to start.
    assert "Executing steps in process" in first.stderr
    query = "SELECT id, name, price FROM {} ORDER BY id"
    assert rows(setup.sink_uri, query.format("landing.items")) == rows(
        setup.source_uri, query.format("public.items")
    )

    # The source changes; the next run replaces the target with exactly the new rows.
    items_table(setup.source_uri, rows=120)
    second = materialize(setup, "landing/items")
    assert second.returncode == 0, second.stderr[-3000:]
    assert rows(setup.sink_uri, "SELECT count(*), max(id) FROM landing.items") == [(120, 120)]

    metadata = latest_materialization(setup).metadata
    assert metadata["dagster/row_count"].value == 120
    assert metadata["dagster/table_name"].value.endswith(".landing.items")
    columns = [c.name for c in metadata["dagster/column_schema"].value.columns]
    assert columns == ["id", "name", "price", "added"]
    assert metadata["pgflow/strategy"].value == "full_refresh/truncate_insert"
    assert metadata["pgflow/bytes_moved"].value > 0
    assert metadata["pgflow/rows_per_second"].value > 0
    assert "TRUNCATE" in metadata["pgflow/sql"].value
    assert metadata["pgflow/duplicates_dropped"].value == 0
    assert "pgflow/rows_deleted" not in metadata  # only replace deletes by predicate

    # The load ran in its source connection's pool, limited by the shipped dagster.yaml.
    with instance(setup) as inst:
        pool = inst.event_log_storage.get_concurrency_info("pgflow/source/shop")
        assert pool.slot_count == 2 and pool.active_slot_count == 0

    # Secrets stay out of logs and metadata.
    everything = first.stdout + first.stderr + second.stdout + second.stderr + repr(metadata)
    source_password = psycopg.conninfo.conninfo_to_dict(setup.source_uri)["password"]
    assert source_password and source_password not in everything


def test_a_bad_spec_fails_the_load_naming_file_and_field(dagster_setup: DagsterSetup):
    setup = dagster_setup
    spec = setup.specs / "items.yaml"
    spec.write_text(PIPELINE_YAML.format(method="swap_tables"))
    result = materialize(setup, "landing/items")
    assert result.returncode != 0
    assert str(spec) in result.stderr
    assert "field 'sink.strategy.method': 'swap_tables' is not allowed" in result.stderr
    assert "truncate_insert, exchange" in result.stderr


def test_a_connection_failure_names_the_connection_but_not_the_password(dagster_setup):
    setup = dagster_setup
    good = setup.env["PGFLOW_CONN_SHOP"]
    setup.env["PGFLOW_CONN_SHOP"] = good.replace(setup.password, "Wr0ngPassw0rd", 1)
    assert setup.env["PGFLOW_CONN_SHOP"] != good
    result = materialize(setup, "landing/items")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "could not connect to 'shop' (env)" in output
    assert "password authentication failed" in output
    assert "Wr0ngPassw0rd" not in output and setup.password not in output

"""`dg`, Dagster's front door, on this repository's project ([tool.dg] in pyproject.toml: the
`pgflow.definitions` code location): `dg launch --assets` with the shipped Postgres instance,
and `dg check defs` / `dg list defs` in a fresh clone's state, with no environment at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import dagster
import psycopg

from pgflow_tests.bindings.conftest import REPO, DagsterSetup

DG = str(Path(sys.executable).with_name("dg"))

# The demo specs' targets (pipelines/shop.yaml and the schema-wide pipelines/catalog.yaml,
# expanded from its table cache without a connection).
DEMO_TARGETS = {
    "landing/customers",
    "landing/orders",
    "landing/order_items",
    "landing/payments",
    "landing/customer_contacts",
    "landing/orders_monthly",
    "delta/orders",
    "landing_catalog/categories",
    "landing_catalog/products",
}


def dg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DG, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )


def without_settings() -> dict[str, str]:
    """The environment of a fresh shell: no DAGSTER_HOME, no DAGSTER_PG_*, no PGFLOW_*."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PGFLOW_"))}


def rows(uri: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(uri) as conn:
        return conn.execute(query).fetchall()


def test_dg_launch_materializes_the_selection_without_a_warning(dagster_setup: DagsterSetup):
    setup = dagster_setup
    done = dg(setup.env, "launch", "--assets", "landing/items")
    assert done.returncode == 0, done.stderr[-3000:]
    query = "SELECT id, name, price FROM {} ORDER BY id"
    target = rows(setup.sink_uri, query.format("landing.items"))
    assert len(target) == 300
    assert target == rows(setup.source_uri, query.format("public.items"))
    # `dagster asset materialize` printed a SupersessionWarning; its successor prints none.
    assert "Warning" not in done.stdout + done.stderr
    # The run was recorded by the shipped instance (Postgres storage in DAGSTER_HOME).
    with (
        patch.dict(os.environ, setup.env),
        dagster.DagsterInstance.from_config(str(setup.home)) as instance,
    ):
        event = instance.get_latest_materialization_event(dagster.AssetKey(["landing", "items"]))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata["dagster/row_count"].value == 300


def test_dg_check_and_list_defs_need_no_environment():
    env = without_settings()
    checked = dg(env, "check", "defs")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully." in checked.stdout
    listed = dg(env, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    keys = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert keys >= DEMO_TARGETS
    assert "Warning" not in checked.stderr + listed.stderr

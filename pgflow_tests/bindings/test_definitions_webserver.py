"""The real `dagster-webserver` loads workspace.yaml: the pgflow location is LOADED with the
assets, checks, sensors and schedules of the specs, and a bad spec shows up as a load error
naming the file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from pgflow_tests.bindings.conftest import PIPELINE_YAML, REPO, DagsterSetup

WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))
QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename
      ... on RepositoryLocation { repositories {
          sensors { name minIntervalSeconds }
          schedules { name cronSchedule executionTimezone }
          assetNodes {
            assetKey { path } groupName kinds isPartitioned opNames
            dependencyKeys { path }
            tags { key value }
            owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
            assetChecksOrError { ... on AssetChecks { checks { name } } }
          } } }
      ... on PythonError { message errorChain { error { message } } } } } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def webserver(setup: DagsterSetup) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [WEBSERVER, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        env=setup.env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()  # the webserver handles SIGTERM itself, ignored or not before
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def location(url: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        response = requests.post(f"{url}/graphql", json={"query": QUERY}, timeout=30)
        entry = response.json()["data"]["workspaceOrError"]["locationEntries"][0]
        if entry["loadStatus"] != "LOADING" or time.monotonic() > deadline:
            return entry
        time.sleep(0.5)


def test_webserver_loads_the_pgflow_location_with_its_assets(dagster_setup: DagsterSetup):
    with webserver(dagster_setup) as url:
        entry = location(url)
    assert entry["name"] == "pgflow"
    assert entry["loadStatus"] == "LOADED"
    loaded = entry["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", loaded
    repository = loaded["repositories"][0]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in repository["assetNodes"]}
    assert set(nodes) == {"landing/items", "shop/public/items"}

    # What the UI shows for the pipeline: lineage, kinds, owners, tags and its checks.
    items = nodes["landing/items"]
    assert items["dependencyKeys"] == [{"path": ["shop", "public", "items"]}]
    assert (items["groupName"], items["kinds"], items["isPartitioned"]) == (
        "shop",
        ["postgres"],
        False,
    )
    assert items["owners"] == [{"team": "data-platform"}]
    assert {"key": "domain", "value": "catalogue"} in items["tags"]
    checks = {c["name"] for c in items["assetChecksOrError"]["checks"]}
    assert checks == {"row_count_parity", "schema", "freshness", "value_parity"}

    sensors = {s["name"]: s["minIntervalSeconds"] for s in repository["sensors"]}
    assert sensors == {"pgflow_stale_shop": 60, "pgflow_freshness": 60}
    schedules = sorted(repository["schedules"], key=lambda s: s["name"])
    assert schedules == [
        {
            "name": "landing_items_schedule",
            "cronSchedule": "15 3 * * *",
            "executionTimezone": "Europe/Berlin",
        },
        # The scan checks' own schedule: checks.scan_schedule's default.
        {
            "name": "pgflow_scan_checks_schedule",
            "cronSchedule": "0 3 * * *",
            "executionTimezone": "UTC",
        },
    ]


def test_webserver_shows_a_bad_spec_as_a_load_error(dagster_setup: DagsterSetup):
    spec = dagster_setup.specs / "items.yaml"
    spec.write_text(
        PIPELINE_YAML.format(method="exchange").replace("mode: full_refresh", "mode: full_refreshh")
    )
    with webserver(dagster_setup) as url:
        entry = location(url)
    error = entry["locationOrLoadError"]
    assert error["__typename"] == "PythonError"
    messages = error["message"] + "".join(link["error"]["message"] for link in error["errorChain"])
    assert str(spec) in messages
    assert "field 'sink.strategy.mode': 'full_refreshh' is not allowed" in messages


SHARED = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: {name}}}
  options: {{incremental_strategy: cdc, slot_name: shop_slot}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: {name}_cdc}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


def test_webserver_shows_a_shared_slot_as_one_step_with_an_asset_per_table(
    dagster_setup: DagsterSetup,
):
    for name in ("items", "orders"):
        (dagster_setup.specs / f"{name}_cdc.yaml").write_text(SHARED.format(name=name))
    with webserver(dagster_setup) as url:
        entry = location(url)
    assert entry["loadStatus"] == "LOADED", entry["locationOrLoadError"]
    nodes = {
        "/".join(n["assetKey"]["path"]): n
        for n in entry["locationOrLoadError"]["repositories"][0]["assetNodes"]
    }
    items, orders = nodes["landing/items_cdc"], nodes["landing/orders_cdc"]
    assert items["opNames"] == orders["opNames"] == ["cdc_slot_shop_shop_slot"]
    assert items["dependencyKeys"] == [{"path": ["shop", "public", "items"]}]
    assert orders["dependencyKeys"] == [{"path": ["shop", "public", "orders"]}]
    assert {c["name"] for c in orders["assetChecksOrError"]["checks"]} >= {"slot_health"}

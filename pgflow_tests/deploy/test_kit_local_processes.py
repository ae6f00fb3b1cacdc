"""The kit's services as local processes, started with the kit's own commands and files: the
user-code server (the image's CMD), the webserver and the daemon (the Compose commands) on
deploy/workspace.yaml (host and port rewritten) and deploy/dagster.local.yaml (the kit's instance
with the default run launcher) on a throwaway Postgres. Materializations launched through the
webserver's GraphQL API wait in the queue, the daemon starts them within the kit's limits, and
they load the table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests
import yaml

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.bindings.conftest import PIPELINE_YAML, items_table
from pgflow_tests.bindings.test_definitions_webserver import free_port
from pgflow_tests.deploy import kit
from pgflow_tests.deploy.test_kit_instance import storage_env

BIN = Path(sys.executable).parent
ITEMS = ["landing", "items"]

LOCATION = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename
      ... on RepositoryLocation { repositories { name assetNodes { assetKey { path } jobNames } } }
      ... on PythonError { message } } } } } }
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message } } }
"""
RUN = """
query Run($id: ID!) { runOrError(runId: $id) { __typename
    ... on Run { status startTime endTime tags { key value } } } }
"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def with_options(argv: list[str], **values: str) -> list[str]:
    """`argv` with the values of its options replaced (`h="127.0.0.1"` replaces `-h 0.0.0.0`)."""
    out = list(argv)
    for name, value in values.items():
        out[out.index(f"-{name}") + 1] = value
    return [str(BIN / out[0]), *out[1:]]


@contextmanager
def service(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[Path]:
    """A process in its own process group; the whole group is stopped at the end."""
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield log
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # each Dagster process shuts down cleanly
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        # Whatever is left in the group (the code server's gRPC child, run workers) is killed.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(what: str, check: Callable[[], Any], logs: list[Path], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def grpc_serving(port: int, env: dict[str, str]) -> bool:
    check = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0


def webserver_up(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=2).ok
    except requests.ConnectionError:
        return False


def loaded_location(url: str) -> dict[str, Any] | None:
    entries = graphql(url, LOCATION)["workspaceOrError"]["locationEntries"]
    return entries[0] if entries and entries[0]["loadStatus"] == "LOADED" else None


@dataclass
class LocalKit:
    """The kit's files for local processes: DAGSTER_HOME (the services' cwd, as in the images)
    with dagster.local.yaml and the workspace pointed at 127.0.0.1, and the environment."""

    home: Path
    env: dict[str, str]
    grpc_port: int
    web_port: int


def local_kit(tmp_path: Path, local_pg: ClusterInfo, storage_uri: str, **conns: str) -> LocalKit:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "items.yaml").write_text(PIPELINE_YAML.format(method="truncate_insert"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(kit.LOCAL_INSTANCE.read_text())
    grpc_port, web_port = free_port(), free_port()
    workspace = kit.load_yaml(kit.WORKSPACE)
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=grpc_port)
    (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    env = {
        **os.environ,
        **storage_env(local_pg, storage_uri),
        "DAGSTER_HOME": str(home),
        "PGFLOW_CONFIG": str(specs),
        **conns,
    }
    return LocalKit(home, env, grpc_port, web_port)


def launch_items(url: str, location: dict[str, Any]) -> dict[str, Any]:
    """launchRun for landing/items, tagged as pgflow's sensors tag their runs."""
    assert location["name"] == "pgflow"
    assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
    (repository,) = location["locationOrLoadError"]["repositories"]
    (items,) = [n for n in repository["assetNodes"] if n["assetKey"]["path"] == ITEMS]
    params = {
        "selector": {
            "repositoryLocationName": "pgflow",
            "repositoryName": repository["name"],
            "jobName": items["jobNames"][0],
            "assetSelection": [{"path": ITEMS}],
            "assetCheckSelection": [],
        },
        # The queue lets 1 run tagged `shop` start at a time.
        "executionMetadata": {"tags": [{"key": "pgflow/source", "value": "shop"}]},
    }
    launched = graphql(url, LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]


# 25-60 s (three Dagster processes, two run workers one after the other, the machine's load):
# under the minute, so in `make test`.
def test_kit_services_run_a_queued_materialization(
    local_pg: ClusterInfo, make_database: Callable[[], str], tmp_path: Path
):
    source_uri, sink_uri, storage_uri = make_database(), make_database(), make_database()
    items_table(source_uri, rows=300)
    local = local_kit(
        tmp_path, local_pg, storage_uri, PGFLOW_CONN_SHOP=source_uri, PGFLOW_CONN_WAREHOUSE=sink_uri
    )
    compose = kit.load_yaml(kit.COMPOSE)["services"]
    code_server = with_options(
        kit.dockerfile_stages()["user-code"].exec_form("CMD"), h="127.0.0.1", p=str(local.grpc_port)
    )
    webserver = with_options(compose["webserver"]["command"], h="127.0.0.1", p=str(local.web_port))
    daemon = with_options(compose["daemon"]["command"])
    url = f"http://127.0.0.1:{local.web_port}"

    with ExitStack() as stack:

        def start(argv: list[str], name: str) -> Path:
            return stack.enter_context(service(argv, local.env, local.home, tmp_path / name))

        logs = [start(code_server, "code_server.log")]
        wait_for("the code server", lambda: grpc_serving(local.grpc_port, local.env), logs)
        logs += [start(webserver, "web.log"), start(daemon, "daemon.log")]
        wait_for("the webserver", lambda: webserver_up(url), logs)
        location = wait_for("the pgflow location", lambda: loaded_location(url), logs)
        # Two runs of the same source at once: the queue holds the second back.
        launched = [launch_items(url, location), launch_items(url, location)]
        seen = {run["runId"]: [run["status"]] for run in launched}

        def finished() -> list[dict[str, Any]] | None:
            runs = [graphql(url, RUN, id=run_id)["runOrError"] for run_id in seen]
            for statuses, run in zip(seen.values(), runs, strict=True):
                if run["status"] != statuses[-1]:
                    statuses.append(run["status"])
            return runs if all(run["status"] in TERMINAL for run in runs) else None

        runs = wait_for("the runs", finished, logs, timeout=300)

    # Through the queue: each waited as QUEUED until the daemon started it, and the limit of 1
    # run tagged `pgflow/source: shop` kept them apart.
    for statuses in seen.values():
        assert statuses[0] == "QUEUED" and statuses[-1] == "SUCCESS", (
            seen,
            [p.read_text()[-3000:] for p in logs],
        )
    for run in runs:
        assert {"key": "pgflow/source", "value": "shop"} in run["tags"]
    first, second = sorted(runs, key=lambda run: run["startTime"])
    assert second["startTime"] >= first["endTime"], runs
    query = "SELECT id, name, price FROM {} ORDER BY id"
    with psycopg.connect(source_uri) as source, psycopg.connect(sink_uri) as sink:
        expected = source.execute(query.format("public.items")).fetchall()
        assert len(expected) == 300
        assert sink.execute(query.format("landing.items")).fetchall() == expected

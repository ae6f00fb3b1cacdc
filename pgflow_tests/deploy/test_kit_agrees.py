"""The deployment kit's files agree with each other and with pgflow: the module, the ports, the
environment variables, the run queue limits, the image's user and versions. No container engine
runs here: these checks are what can be known from the files."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import PurePosixPath
from typing import Any

import pytest

from pgflow.config.environment import config_path, env_var_for
from pgflow.config.loader import load_project
from pgflow.connections.secrets import VaultSettings
from pgflow.localdb.cli import env_vars
from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.deploy import kit
from pgflow_tests.makefile import JEMALLOC_SETTING, exported_default

MODULE = "pgflow.definitions"


class RecordingEnviron(dict[str, str]):
    """An environment that records every variable looked up in it."""

    def __init__(self, **values: str) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def pgflow_reads() -> set[str]:
    """The variables pgflow reads for the shipped specs' connections: PGFLOW_CONN_<ID> of each
    env connection, and every Vault setting (VaultSettings asked with a Vault address set)."""
    project = load_project(kit.REPO / "pipelines", environ={})
    endpoints = [e for p in project.pipelines for e in (p.source, p.sink) if e.connection_id]
    names = {env_var_for(e.connection_id) for e in endpoints if e.connection_type == "env"}
    assert names, "the shipped specs use no env connection"
    environ = RecordingEnviron(VAULT_ADDR="https://vault.invalid:8200")
    VaultSettings.from_environ(environ)
    return names | environ.read


@pytest.fixture(scope="module")
def stages() -> dict[str, kit.Stage]:
    return kit.dockerfile_stages()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return kit.load_yaml(kit.COMPOSE)


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return kit.load_yaml(kit.HELM_VALUES)


@pytest.fixture(scope="module")
def instance() -> dict[str, Any]:
    return kit.load_yaml(kit.INSTANCE)


def pgflow_deployment(helm: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    return deployment


def test_every_file_names_the_pgflow_definitions_module(stages, helm):
    assert importlib.util.find_spec(MODULE) is not None
    user_code = stages["user-code"].exec_form("CMD")
    assert user_code[:3] == ["dagster", "code-server", "start"]
    assert kit.option(user_code, "-m", "--module-name") == MODULE
    assert kit.option(pgflow_deployment(helm)["dagsterApiGrpcArgs"], "-m") == MODULE
    # The repository's own workspace loads the same module under the same location name.
    (root,) = kit.load_yaml(kit.REPO / "workspace.yaml")["load_from"]
    (served,) = kit.load_yaml(kit.WORKSPACE)["load_from"]
    assert root["python_module"]["module_name"] == MODULE
    assert served["grpc_server"]["location_name"] == root["python_module"]["location_name"]


def test_the_code_server_port_is_4000_everywhere(stages, compose, helm):
    user_code = stages["user-code"]
    assert user_code.all("EXPOSE") == ["4000"]
    assert kit.option(user_code.exec_form("CMD"), "-p", "--port") == "4000"
    service = compose["services"]["user_code"]
    assert service["expose"] == ["4000"]
    assert kit.option(service["healthcheck"]["test"], "-p") == "4000"
    (served,) = kit.load_yaml(kit.WORKSPACE)["load_from"]
    assert served["grpc_server"]["host"] == "user_code"  # the Compose service's name
    assert served["grpc_server"]["port"] == 4000
    assert pgflow_deployment(helm)["port"] == 4000


def test_the_webserver_port_is_3000_everywhere(stages, compose):
    dagster = stages["dagster"]
    assert dagster.all("EXPOSE") == ["3000"]
    assert kit.option(dagster.exec_form("CMD"), "-p", "--port") == "3000"
    webserver = compose["services"]["webserver"]
    assert kit.option(webserver["command"], "-p", "--port") == "3000"
    assert webserver["ports"] == ["3000:3000"]
    daemon = compose["services"]["daemon"]
    assert daemon["command"][:2] == ["dagster-daemon", "run"]
    # Both load the workspace.yaml the image copies into DAGSTER_HOME, their working folder.
    for command in (webserver["command"], daemon["command"]):
        assert kit.option(command, "-w", "--workspace") == "workspace.yaml"
    assert dagster.last("WORKDIR") == dagster.env()["DAGSTER_HOME"]
    assert "deploy/workspace.yaml" in dagster.last("COPY").split()


def test_connection_variables_are_the_ones_pgflow_reads(compose, helm, instance):
    reads = pgflow_reads()
    assert {"PGFLOW_CONN_SHOP", "PGFLOW_CONN_WAREHOUSE", "VAULT_ADDR", "VAULT_TOKEN"} <= reads
    services = compose["services"]
    pgflow_env = {n for n in kit.env_names(services["user_code"]["environment"])}
    assert {n for n in pgflow_env if not n.startswith("DAGSTER_")} == reads
    # The daemon holds them only to forward them to each run's container.
    daemon_env = kit.env_names(services["daemon"]["environment"])
    assert {n for n in daemon_env if not n.startswith("DAGSTER_")} == reads
    assert not kit.env_names(services["webserver"]["environment"]) & reads
    forwarded = set(instance["run_launcher"]["config"]["env_vars"])
    assert forwarded == reads | kit.env_refs(instance["storage"])

    # Helm: the same names, each from the key of that name in the Secret pgflow-connections,
    # which secrets.example.yaml creates with exactly those keys.
    env = pgflow_deployment(helm)["env"]
    assert {item["name"] for item in env} == reads
    for item in env:
        ref = item["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("pgflow-connections", item["name"])
        # Only Vault settings may be missing: a spec's env connection must be there.
        assert ref.get("optional", False) == (not item["name"].startswith("PGFLOW_CONN_"))
    secrets = {doc["metadata"]["name"]: doc for doc in kit.load_yaml_documents(kit.HELM_SECRETS)}
    assert set(secrets["pgflow-connections"]["stringData"]) == reads
    # Compose takes every value from deploy/.env, whose example names each one.
    example = dict(
        line.split("=", 1)
        for line in kit.ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert kit.interpolated(kit.COMPOSE.read_text()) - {"PGFLOW_IMAGE_TAG"} == set(example)


def test_dagster_storage_variables_agree(compose, instance):
    storage = kit.env_refs(instance["storage"])
    assert storage == {f"DAGSTER_PG_{p}" for p in ("HOST", "PORT", "USER", "PASSWORD", "DB")}
    # `pgflow localdb env` exports the same names (README "Deploying": the kit by hand).
    local = env_vars(ClusterInfo("127.0.0.1", 5432, "user", "secret"))
    assert {n for n in local if n.startswith("DAGSTER_")} == storage
    for name in ("webserver", "daemon", "user_code"):
        env = kit.env_names(compose["services"][name]["environment"])
        assert {n for n in env if n.startswith("DAGSTER_PG_")} == storage, name
    postgres = compose["services"]["dagster_postgres"]["environment"]
    storage_env = compose["services"]["webserver"]["environment"]
    assert postgres["POSTGRES_USER"] == storage_env["DAGSTER_PG_USER"]
    assert postgres["POSTGRES_PASSWORD"] == storage_env["DAGSTER_PG_PASSWORD"]
    assert postgres["POSTGRES_DB"] == storage_env["DAGSTER_PG_DB"]
    assert storage_env["DAGSTER_PG_HOST"] == "dagster_postgres"


def test_run_queue_limits_agree_between_compose_helm_and_the_repository(instance, helm):
    concurrency = instance["concurrency"]
    assert concurrency == kit.load_yaml(kit.repository_instance())["concurrency"]
    assert {"key": "pgflow/source", "value": "shop", "limit": 1} in (
        concurrency["runs"]["tag_concurrency_limits"]
    )
    chart = kit.camel_to_snake(helm["concurrency"])
    assert chart.pop("enabled") is True
    assert chart == concurrency
    # The queue is on, and its limits live only under `concurrency` (Dagster refuses both).
    assert instance["run_coordinator"] == {"module": "dagster", "class": "QueuedRunCoordinator"}
    coordinator = helm["dagsterDaemon"]["runCoordinator"]
    assert (coordinator["enabled"], coordinator["type"]) == (True, "QueuedRunCoordinator")
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)


def test_images_run_as_a_non_root_user(stages, helm):
    uids = set()
    for stage in stages.values():
        user = stage.last("USER")
        uid = user.split(":")[0]
        # Numeric, so that Kubernetes' runAsNonRoot can verify it.
        assert uid.isdigit() and int(uid) != 0, (stage.name, user)
        uids.add(int(uid))
        # USER comes after the last RUN: nothing runs as root after it.
        keywords = [key for key, _ in stage.instructions]
        assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    security = pgflow_deployment(helm)["podSecurityContext"]
    assert security["runAsNonRoot"] is True
    assert uids == {security["runAsUser"]}


def test_images_pin_the_dagster_versions_of_pyproject(stages):
    pyproject = tomllib.loads((kit.REPO / "pyproject.toml").read_text())["project"]
    pins = dict(
        re.findall(r"^(dagster[\w-]*)==([\w.]+)$", "\n".join(pyproject["dependencies"]), re.M)
    )
    assert pins["dagster"] == "1.13.27"
    assert ">=3.11" in pyproject["requires-python"]
    for stage in stages.values():
        assert stage.base == "python:3.11-slim"
        installed = dict(re.findall(r"(dagster[\w-]*)==([\w.]+)", " ".join(stage.all("RUN"))))
        for name, version in installed.items():
            # Integration libraries (dagster-docker, dagster-k8s) follow dagster-postgres.
            assert version == pins.get(name, pins["dagster-postgres"]), (stage.name, name)
    assert set(re.findall(r"dagster-\w+", " ".join(stages["user-code"].all("RUN")))) == {
        "dagster-docker",
        "dagster-k8s",
    }
    assert "pip install ." in " ".join(stages["user-code"].all("RUN"))


def test_user_code_image_carries_the_specs_and_the_settings(stages):
    user_code = stages["user-code"]
    env = user_code.env()
    workdir = PurePosixPath(user_code.last("WORKDIR"))
    copied = {
        str(workdir / dest.rstrip("/")) if not dest.startswith("/") else dest: src
        for src, dest in (args.split()[-2:] for args in user_code.all("COPY"))
    }
    specs = str(config_path(env))
    assert copied[specs] == "pipelines"
    assert env[JEMALLOC_SETTING] == exported_default(JEMALLOC_SETTING)
    assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"


def test_dockerignore_sends_exactly_what_the_dockerfile_copies(stages):
    lines = [line for line in kit.DOCKERIGNORE.read_text().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]
    assert lines[0] == "*"  # everything else (.venv, .pgflow, .git, tests, bench) stays out
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = {
        src
        for stage in stages.values()
        for args in stage.all("COPY")
        for src in args.split()[:-1]
        if not src.startswith("--")
    }
    assert {s.rstrip("/") for s in sources} == allowed


def test_runs_share_the_compose_network_and_volumes(compose, instance, stages):
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    config = launcher["config"]
    network = compose["networks"]["pgflow"]["name"]
    assert config["network"] == network
    services = compose["services"]
    for service in ("dagster_postgres", "user_code", "webserver", "daemon"):
        assert services[service]["networks"] == ["pgflow"]
    # Runs start from the code server's own image.
    user_code = services["user_code"]
    assert user_code["environment"]["DAGSTER_CURRENT_IMAGE"] == user_code["image"]
    # Each volume of a run's container is a Compose volume under its fixed name, mounted at
    # the same place as in the services that share it, on a folder both images own.
    mounts = dict(volume.split(":") for volume in config["container_kwargs"]["volumes"])
    assert set(mounts) == {"pgflow_lake", "dagster_storage"}
    for volume in mounts:
        assert compose["volumes"][volume]["name"] == volume
    assert f"pgflow_lake:{mounts['pgflow_lake']}" in user_code["volumes"]
    # The webserver shows the stdout and stderr the runs write under DAGSTER_HOME/storage.
    for service in ("webserver", "daemon"):
        assert f"dagster_storage:{mounts['dagster_storage']}" in services[service]["volumes"]
    for stage in stages.values():
        assert mounts["dagster_storage"] == stage.env()["DAGSTER_HOME"] + "/storage"
        assert mounts["dagster_storage"] in " ".join(stage.all("RUN"))  # created, then chown
    # Local Delta tables (the demo's `path: .pgflow/lake/orders`) are on the lake volume.
    workdir = PurePosixPath(stages["user-code"].last("WORKDIR"))
    project = load_project(kit.REPO / "pipelines", environ={})
    lake = [p.sink.path for p in project.pipelines if p.sink.type == "delta"]
    assert lake
    for path in lake:
        assert (workdir / str(path)).is_relative_to(mounts["pgflow_lake"]), path
    assert mounts["pgflow_lake"] in " ".join(stages["user-code"].all("RUN"))
    # DockerRunLauncher refuses these in container_kwargs (dagster_docker.utils, 0.29.27).
    assert not {"image", "environment", "network"} & set(config["container_kwargs"])


def test_docker_run_launcher_config_uses_only_its_fields(instance):
    # DockerRunLauncher's config schema in dagster-docker 0.29.27 (utils.DOCKER_CONFIG_SCHEMA).
    fields = {"image", "network", "networks", "registry", "env_vars", "container_kwargs"}
    config = instance["run_launcher"]["config"]
    assert set(config) <= fields
    assert not ("network" in config and "networks" in config)
    assert all(isinstance(name, str) and "=" not in name for name in config["env_vars"])


# Field names of the dagster/dagster chart's values schema (helm/dagster/schema in Dagster's
# repository, the 1.13 line): a misspelt key in values.yaml would be silently ignored by Helm.
CHART_TOP = {
    "global", "dagsterWebserver", "dagster-user-deployments", "postgresql",
    "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
    "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher",
    "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount",
    "retention", "concurrency", "additionalInstanceConfig", "extraManifests",
}  # fmt: skip
CHART_USER_DEPLOYMENT = {
    "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs",
    "includeConfigInLaunchedRuns", "env", "envConfigMaps", "envSecrets", "annotations",
    "nodeSelector", "affinity", "tolerations", "podSecurityContext", "securityContext",
    "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels", "volumeMounts",
    "volumes", "schedulerName",
}  # fmt: skip
CHART_K8S_RUN_LAUNCHER = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
    "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "resources",
    "schedulerName", "failPodOnRunFailure", "securityContext", "runK8sConfig",
}  # fmt: skip
CHART_POSTGRESQL = {
    "enabled", "image", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
    "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service",
}  # fmt: skip


def test_helm_values_use_only_the_charts_fields(helm, instance):
    assert set(helm) <= CHART_TOP
    assert set(pgflow_deployment(helm)) <= CHART_USER_DEPLOYMENT
    launcher = helm["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert set(launcher["config"]["k8sRunLauncher"]) <= CHART_K8S_RUN_LAUNCHER
    postgresql = helm["postgresql"]
    assert set(postgresql) <= CHART_POSTGRESQL
    # Dagster's storage as in deploy/dagster.yaml, the password never in the values.
    assert (
        postgresql["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    )
    assert "postgresqlPassword" not in postgresql
    assert helm["generatePostgresqlPasswordSecret"] is False
    secrets = {doc["metadata"]["name"]: doc for doc in kit.load_yaml_documents(kit.HELM_SECRETS)}
    assert set(secrets[helm["global"]["postgresqlSecretName"]]["stringData"]) == {
        "postgresql-password"
    }

"""deploy/dagster.yaml is a valid Dagster instance on a real Postgres (Dagster's own schema and
checks, the storage created), and dagster.local.yaml differs from it only by its run launcher."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import dagster as dg
import psycopg
import pytest

from pgflow.localdb.cli import env_vars
from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.deploy import kit


def storage_env(local_pg: ClusterInfo, storage_uri: str) -> dict[str, str]:
    """Dagster's storage as `pgflow localdb env` exports it, in the database `storage_uri`."""
    env = {k: v for k, v in env_vars(local_pg).items() if k.startswith("DAGSTER_PG_")}
    env["DAGSTER_PG_DB"] = str(psycopg.conninfo.conninfo_to_dict(storage_uri)["dbname"])
    return env


@contextmanager
def kit_instance(config: Path, home: Path, env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The instance a service of the kit loads: DAGSTER_HOME holding `config` as dagster.yaml."""
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    with patch.dict(os.environ, env), dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_local_override_changes_only_the_run_launcher():
    deployed, local = kit.load_yaml(kit.INSTANCE), kit.load_yaml(kit.LOCAL_INSTANCE)
    assert deployed.pop("run_launcher")["class"] == "DockerRunLauncher"
    assert local.pop("run_launcher") == {"module": "dagster", "class": "DefaultRunLauncher"}
    assert local == deployed


@pytest.mark.parametrize("config", [kit.INSTANCE, kit.LOCAL_INSTANCE], ids=lambda p: p.name)
def test_kit_instance_loads_with_its_queue_and_pools_on_postgres(
    config: Path, local_pg: ClusterInfo, make_database: Callable[[], str], tmp_path: Path
):
    storage_uri = make_database()
    with kit_instance(config, tmp_path / "home", storage_env(local_pg, storage_uri)) as instance:
        # Dagster validated the file against its instance schema and created its storage.
        assert instance.get_runs() == []
        ref = instance.get_ref()
        assert (ref.storage_data.module_name, ref.storage_data.class_name) == (
            "dagster_postgres",
            "DagsterPostgresStorage",
        )
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 10
        assert queue.tag_concurrency_limits == [
            {"key": "pgflow/source", "value": {"applyLimitPerUniqueValue": True}, "limit": 3},
            {"key": "pgflow/source", "value": "shop", "limit": 1},
        ]
        assert concurrency.pool_config.default_pool_limit == 2
        assert concurrency.pool_config.pool_granularity is not None
        assert concurrency.pool_config.pool_granularity.value == "op"
        launcher = ref.run_launcher_data
        assert launcher is not None
        if config == kit.LOCAL_INSTANCE:
            assert isinstance(instance.run_launcher, dg.DefaultRunLauncher)
        else:
            # Loaded only where a run is launched (the daemon, the webserver, the run itself):
            # dagster-docker is in the kit's images, not in pgflow's dependencies.
            assert (launcher.module_name, launcher.class_name) == (
                "dagster_docker",
                "DockerRunLauncher",
            )
    with psycopg.connect(storage_uri) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables").fetchall()}
    assert {"runs", "event_logs", "jobs", "concurrency_limits"} <= tables

"""Shared by the bad-spec tests (test_bad_specs_*.py): the `World` they run in, a source
with public.items, an empty sink, Dagster instance storage and a scratch root (the `world`
fixture, one per module; conftest.py offers it to the test modules).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.bindings.conftest import REPO, items_table


@dataclass
class World:
    """A source with public.items, an empty sink, Dagster instance storage, and a scratch root."""

    info: ClusterInfo
    source_uri: str
    sink_uri: str
    env: dict[str, str]  # the process environment of a run, before a case changes it
    root: Path
    home: Path


def _create_database(info: ClusterInfo) -> str:
    name = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(info.uri("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def _drop_database(info: ClusterInfo, name: str) -> None:
    with psycopg.connect(info.uri("postgres"), autocommit=True) as conn:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(statement.format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def world(local_pg: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    names = [_create_database(local_pg) for _ in range(3)]
    source_uri, sink_uri = local_pg.uri(names[0]), local_pg.uri(names[1])
    items_table(source_uri, rows=25)
    root = tmp_path_factory.mktemp("bad_specs")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "PGFLOW_CONN_SHOP": source_uri,
        "PGFLOW_CONN_WAREHOUSE": sink_uri,
        "PGFLOW_MAX_RETRIES": "0",  # an unreachable host is transient: fail now, not in 70 s
        "NO_PROXY": "127.0.0.1,localhost",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": local_pg.host,
        "DAGSTER_PG_PORT": str(local_pg.port),
        "DAGSTER_PG_USER": local_pg.user,
        "DAGSTER_PG_PASSWORD": local_pg.password,
        "DAGSTER_PG_DB": names[2],
    }
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "PGFLOW_CONFIG"):
        env.pop(name, None)
    yield World(local_pg, source_uri, sink_uri, env, root, home)
    for name in names:
        _drop_database(local_pg, name)

"""A real Dagster set-up for binding tests: specs on disk, Postgres instance storage, env."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]

PIPELINE_YAML = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy:
    mode: full_refresh
    method: {method}
description: Items for the catalogue.
owners: [team:data-platform]
tags: {{domain: catalogue}}
freshness: {{warn_after: 1h, fail_after: 6h}}
schedule: {{cron: "15 3 * * *", timezone: Europe/Berlin}}
"""


@dataclass
class DagsterSetup:
    env: dict[str, str]
    specs: Path
    source_uri: str
    sink_uri: str
    password: str
    home: Path


def items_table(uri: str, rows: int = 300) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text NOT NULL,"
            " price numeric(8,2), added timestamptz DEFAULT now());"
            "TRUNCATE items"
        )
        conn.execute(
            "INSERT INTO items (id, name, price) SELECT g, 'item ' || g, g * 1.25"
            " FROM generate_series(1, %s) g",
            (rows,),
        )


def empty_dagster_setup(
    local_pg, make_database: Callable[[], str], tmp_path: Path, **extra_env: str
) -> DagsterSetup:
    """An empty specs folder, source and sink databases, and a DAGSTER_HOME with the shipped
    dagster.yaml whose run and event storage is a Postgres database of its own."""
    source_uri, sink_uri, storage_uri = make_database(), make_database(), make_database()
    specs = tmp_path / "specs"
    specs.mkdir()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(
        REPO / "instance" / "dagster.yaml", home / "dagster.yaml"
    )  # the shipped instance config
    env = {
        **os.environ,
        "PGFLOW_CONFIG": str(specs),
        "PGFLOW_CONN_SHOP": source_uri,
        "PGFLOW_CONN_WAREHOUSE": sink_uri,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": local_pg.host,
        "DAGSTER_PG_PORT": str(local_pg.port),
        "DAGSTER_PG_USER": local_pg.user,
        "DAGSTER_PG_PASSWORD": local_pg.password,
        "DAGSTER_PG_DB": psycopg.conninfo.conninfo_to_dict(storage_uri)["dbname"],
        **extra_env,
    }
    return DagsterSetup(env, specs, source_uri, sink_uri, local_pg.password, home)


@pytest.fixture
def dagster_setup(local_pg, make_database: Callable[[], str], tmp_path: Path) -> DagsterSetup:
    setup = empty_dagster_setup(local_pg, make_database, tmp_path)
    items_table(setup.source_uri)
    (setup.specs / "items.yaml").write_text(PIPELINE_YAML.format(method="truncate_insert"))
    return setup


@dataclass
class Env:
    """In-process set-up for check and sensor tests: connections "shop" (an items table of
    50 rows) and "warehouse" in the environment, a spec folder and a folder for Delta tables."""

    source_uri: str
    sink_uri: str
    specs: Path
    lake: Path


@pytest.fixture
def env(source_uri: str, sink_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("PGFLOW_CONN_SHOP", source_uri)
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", sink_uri)
    items_table(source_uri, rows=50)
    specs = tmp_path / "specs"
    specs.mkdir()
    return Env(source_uri, sink_uri, specs, tmp_path / "lake")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway Dagster instance (SQLite storage in a temporary folder)."""
    with dg.instance_for_test() as inst:
        yield inst

"""Shared fixtures: one real local PostgreSQL cluster per test session (per xdist worker)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgflow.localdb.cluster import ClusterInfo, LocalPostgres
from pgflow_tests.makefile import JEMALLOC_SETTING, exported_default
from pgflow_tests.s3_server import S3Delta, S3Server

# The deployment's jemalloc setting (README "Memory"; `make test` exports it), set before any
# test module loads polars or deltalake: jemalloc reads it then. A value set by the user wins.
os.environ.setdefault(JEMALLOC_SETTING, exported_default(JEMALLOC_SETTING))


def _server_reachable_tmpdir(prefix: str) -> Path:
    # When tests run as root the server runs as OS user postgres, which cannot enter
    # pytest's tmp_path (/tmp/pytest-of-root is mode 700): use a traversable folder in /tmp.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def make_pg_root() -> Iterator[Callable[[], Path]]:
    """Factory of fresh state folders for LocalPostgres; their servers are stopped at the end."""
    created: list[Path] = []

    def make() -> Path:
        path = _server_reachable_tmpdir("pgflow-test-pg-")
        created.append(path)
        return path / "localdb"

    yield make
    for path in created:
        # Safety net: never leave a server behind, even when a test failed halfway.
        LocalPostgres(path / "localdb").destroy()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def local_pg(make_pg_root: Callable[[], Path]) -> Iterator[ClusterInfo]:
    """A running local cluster with databases "source" and "sink", shared by the session."""
    cluster = LocalPostgres(make_pg_root())
    info = cluster.start(["source", "sink"])
    try:
        yield info
    finally:
        cluster.destroy()


@pytest.fixture
def make_database(local_pg: ClusterInfo) -> Iterator[Callable[[], str]]:
    """Factory: create a uniquely named empty database and return its URI (dropped after)."""
    created: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        _admin_execute(local_pg, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return local_pg.uri(name)

    yield make
    for name in created:
        # FORCE: a test may leave a connection (or a pool) open.
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        _admin_execute(local_pg, statement)


@pytest.fixture
def source_uri(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def sink_uri(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def fresh_db(make_database: Callable[[], str]) -> str:
    """The URI of a new, empty database of the session cluster."""
    return make_database()


def _admin_execute(info: ClusterInfo, statement: sql.Composed) -> None:
    with psycopg.connect(info.uri("postgres"), autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A local S3 protocol server (moto, 127.0.0.1, free port) for the session; killed after."""
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_delta(s3_server: S3Server) -> S3Delta:
    """A new bucket: (uri_prefix, storage_options, env), env being the PGFLOW_DELTA_* form."""
    bucket = s3_server.bucket()
    return S3Delta(bucket.uri_prefix, bucket.storage_options(), bucket.env(), bucket)

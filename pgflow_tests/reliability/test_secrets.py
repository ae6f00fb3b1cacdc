"""Reliability: secrets never leave the connection layer, in failed runs or successful ones.

Runs with a wrong password and runs that succeed, for `connection_type: env` and `vault`
connections; three go through the real `dagster asset materialize -m pgflow.definitions` CLI
(Postgres instance storage, the shipped dagster.yaml), the others in-process. No Vault server
can be installed here: the Vault runs use the REAL `hvac` client against `FakeVault`
(pgflow_tests/connections/vault_server.py), a small local HTTP server speaking Vault's KV v2 and
AppRole API (token and AppRole logins, per-token paths), which the CLI subprocess reaches too.

The database role has its own password, used nowhere else, so any occurrence of it is a leak.
The secrets looked for: that password and the wrong one (raw and percent-encoded), the Vault
token, the AppRole secret_id and the token an AppRole login hands out, and the storage
password of the Dagster instance. The places searched, per run: the CLI's stdout and stderr
(in-process: the captured stdout/stderr and every Python logging record at DEBUG, hvac and
urllib3 included), every event log record of the run serialized whole (failure events with
their errors, causes and stack traces included), the step errors again as users read them,
the materialization metadata, the run records (config, tags), every file under the instance
folder (DAGSTER_HOME: compute logs, local artifacts; for in-process runs the SQLite storage
too), and the sink database's tables. Beyond the known values, no text may hold a connection
string with a password (`password=...` or `postgresql://user:...@`), whatever its value.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.bindings.conftest import REPO
from pgflow_tests.connections.vault_server import FakeVault
from pgflow_tests.reliability.secrets_support import (
    RUNS,
    Place,
    Secrets,
    Stage,
    _admin,
    _prepare,
    _run_cli,
    _run_in_process,
    leaks,
)
from pgflow_tests.reliability.specs_snapshot import figures


@pytest.fixture(scope="module")
def stage(local_pg: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    suffix = uuid.uuid4().hex[:10]
    role = f"pgflow_secret_{suffix}"
    secrets = Secrets(
        password=f"Pw-{uuid.uuid4().hex}/ä@1",  # characters a URI must percent-encode
        wrong_password=f"Wr0ng-{uuid.uuid4().hex}",
        vault_token=f"hvs.{uuid.uuid4().hex}",
        secret_id=f"sid-{uuid.uuid4().hex}",
        wrong_secret_id=f"sid-wrong-{uuid.uuid4().hex}",
        approle_token=f"hvs.approle-{uuid.uuid4().hex}",
        storage_password=local_pg.password,
    )
    _admin(
        local_pg,
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(secrets.password)
        ),
    )
    dbs = [f"s_{suffix}_{n}" for n in ("source", "sink", "storage")]
    for db in dbs:
        _admin(local_pg, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    for db in dbs[:2]:
        owner = sql.SQL("ALTER DATABASE {} OWNER TO {}")
        _admin(local_pg, owner.format(sql.Identifier(db), sql.Identifier(role)))
    root = tmp_path_factory.mktemp("secrets")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    with FakeVault() as vault:
        vault.add_token(secrets.vault_token)
        vault.add_approle("pgflow-role", secrets.secret_id, secrets.approle_token)
        result = Stage(local_pg, role, *dbs, secrets, vault, root, home)
        with psycopg.connect(result.uri(dbs[0]), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));"
                "INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 40) g"
            )
        yield result
    for db in dbs:
        _admin(
            local_pg, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
        )
    _admin(local_pg, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_no_secret_reaches_logs_metadata_errors_or_the_event_log(
    stage: Stage, capfd: pytest.CaptureFixture[str]
) -> None:
    outcomes = {}
    for run in RUNS:
        env = _prepare(stage, run)
        if run.cli:
            outcomes[run.name] = _run_cli(stage, run, env)
        else:
            outcomes[run.name] = _run_in_process(stage, run, env, capfd)
    # The runs did what they were meant to: the wrong secrets failed, the right ones loaded.
    expected = {r.name: not r.wrong_password and r.kind != "vault-approle-bad" for r in RUNS}
    assert outcomes == expected
    texts = {(p.run, p.name.split(" (")[0]): p.text for p in stage.places}
    for run in RUNS:
        errors = texts[(run.name, "errors")]
        if run.wrong_password:
            assert "password authentication failed" in errors, errors[-2000:]
        elif run.kind == "vault-approle-bad":
            assert "Vault AppRole login" in errors and "check VAULT_ROLE_ID" in errors
        else:
            assert "dagster/row_count: 40" in texts[(run.name, "materialization metadata")]
    # Each place was really searched: the CLI's output, the records, the instance files.
    for place in stage.places:
        if not place.name.startswith(("materialization", "errors", "sink database", "CLI stdout")):
            assert place.text.strip(), f"{place.run}: {place.name} is empty"
    # Compute logs were written (and searched) for the CLI runs.
    for run in RUNS:
        if run.cli:
            assert "/compute_logs/" in texts[(run.name, "files under the instance folder")]
    # The Vault runs did log in and read through hvac (the secret was really resolved there).
    assert any(r.path == "/v1/auth/approle/login" for r in stage.vault.requests)
    assert any(r.token == stage.secrets.approle_token for r in stage.vault.requests)

    found = leaks(stage)
    figures(
        f"SECRETS: {len(RUNS)} runs, {len(stage.places)} places searched, {len(found)} leaks",
        suite="secrets",
        runs=len(RUNS),
        cli_runs=sum(r.cli for r in RUNS),
        places=len(stage.places),
        place_kinds=sorted({p.name.split(" (")[0] for p in stage.places}),
        leaks=len(found),
        bytes_searched=sum(len(p.text) for p in stage.places),
    )
    assert not found, "\n".join(found)


def test_the_leak_search_finds_what_it_looks_for() -> None:
    """The detector itself: a planted secret, a key=value password and a URI password."""
    secrets = Secrets("Pw-1/ä@1", "Wr0ng-2", "hvs.3", "sid-4", "sid-5", "hvs.6", "pg-7")
    stage = Stage(ClusterInfo("h", 1, "u", "p"), "r", "a", "b", "c", secrets, None, Path(), Path())  # type: ignore[arg-type]
    texts = [
        "connection failed: Pw-1%2F%C3%A4%401 rejected",  # percent-encoded
        "host=db password=hunter2 user=app",
        "postgresql://app:hunter2@db:5432/x",
        "could not connect: postgresql://app:***@db/x password=*** (redacted: fine)",
    ]
    stage.places = [Place("r", f"p{i}", t) for i, t in enumerate(texts)]
    found = leaks(stage)
    assert [f.split(":")[1].strip() for f in found] == ["p0", "p1", "p2"]

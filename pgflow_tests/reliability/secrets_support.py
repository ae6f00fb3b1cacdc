"""Shared by test_secrets.py: the secrets a run could leak and the places searched for them,
the stage (role, databases, FakeVault, instance folder) the runs share, the runs themselves
(in-process and through the real CLI) and the leak search.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch
from urllib.parse import quote

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._serdes import serialize_value
from psycopg import sql

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.bindings.conftest import REPO
from pgflow_tests.connections.vault_server import FakeVault
from pgflow_tests.reliability.specs_model import BASE, merge

DAGSTER = str(Path(sys.executable).with_name("dagster"))
TARGET = dg.AssetKey(["landing", "items"])
# Text that carries a password whatever its value: key=value conninfo or a URI's userinfo.
CONNECTION_STRING = re.compile(
    r"password\s*=\s*(?!\*\*\*)['\"]?[^\s'\"*,)]+|postgres(?:ql)?://[^\s:/@]+:(?!\*\*\*@)[^\s@/]+@",
    re.IGNORECASE,
)


@dataclass
class Secrets:
    password: str
    wrong_password: str
    vault_token: str
    secret_id: str
    wrong_secret_id: str
    approle_token: str
    storage_password: str

    def values(self) -> dict[str, str]:
        found = {}
        for name, value in self.__dict__.items():
            found[name] = value
            if quote(value, safe="") != value:
                found[f"{name} (percent-encoded)"] = quote(value, safe="")
        return found


@dataclass
class Place:
    run: str
    name: str
    text: str


@dataclass
class Stage:
    """Two databases owned by a role of their own, an instance folder, a FakeVault."""

    info: ClusterInfo
    role: str
    source_db: str
    sink_db: str
    storage_db: str
    secrets: Secrets
    vault: FakeVault
    root: Path
    home: Path
    places: list[Place] = field(default_factory=list)

    def uri(self, db: str, password: str | None = None) -> str:
        password = quote(password or self.secrets.password, safe="")
        return f"postgresql://{self.role}:{password}@{self.info.host}:{self.info.port}/{db}"

    def base_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PGFLOW_", "VAULT_", "DAGSTER_"))
        }
        return {
            **env,
            "PGFLOW_MAX_RETRIES": "0",
            "NO_PROXY": "127.0.0.1,localhost",
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_HOST": self.info.host,
            "DAGSTER_PG_PORT": str(self.info.port),
            "DAGSTER_PG_USER": self.info.user,
            "DAGSTER_PG_PASSWORD": self.info.password,
            "DAGSTER_PG_DB": self.storage_db,
        }


def _admin(info: ClusterInfo, statement: sql.Composable, db: str = "postgres") -> None:
    with psycopg.connect(info.uri(db), autocommit=True) as conn:
        conn.execute(statement)


# --- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    name: str
    kind: str  # env | vault-token | vault-approle
    wrong_password: bool
    cli: bool = False


RUNS = (
    Run("env_wrong_password_cli", "env", True, cli=True),
    Run("env_ok_cli", "env", False, cli=True),
    Run("vault_token_ok_cli", "vault-token", False, cli=True),
    Run("env_wrong_password_keyvalue", "env", True),
    Run("vault_token_wrong_password", "vault-token", True),
    Run("vault_approle_wrong_password", "vault-approle", True),
    Run("vault_approle_ok", "vault-approle", False),
    Run("vault_approle_bad_secret_id", "vault-approle-bad", False),
)


def _prepare(stage: Stage, run: Run) -> dict[str, str]:
    """The run's spec folder and environment; Vault secrets under a prefix of its own."""
    specs = stage.root / run.name
    specs.mkdir()
    password = stage.secrets.wrong_password if run.wrong_password else stage.secrets.password
    vault = run.kind.startswith("vault")
    connection_type = {"connection_type": "vault"} if vault else {}
    spec = merge(BASE, {"source": connection_type, "sink": connection_type})
    (specs / "items.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    env = {**stage.base_env(), "PGFLOW_CONFIG": str(specs)}
    for connection_id, db in (("shop", stage.source_db), ("warehouse", stage.sink_db)):
        if not vault:
            variable = f"PGFLOW_CONN_{connection_id.upper()}"
            if run.name.endswith("keyvalue"):
                env[variable] = (
                    f"host={stage.info.host} port={stage.info.port} dbname={db} "
                    f"user={stage.role} password='{password}'"
                )
            else:
                env[variable] = stage.uri(db, password)
            continue
        parts = {
            "host": stage.info.host,
            "port": str(stage.info.port),
            "dbname": db,
            "user": stage.role,
            "password": password,
        }
        stage.vault.put_secret("secret", f"{run.name}/{connection_id}", parts)
    if vault:
        env.update({"VAULT_ADDR": stage.vault.url, "PGFLOW_VAULT_PREFIX": run.name})
        if run.kind == "vault-token":
            env["VAULT_TOKEN"] = stage.secrets.vault_token
        else:
            env["VAULT_ROLE_ID"] = "pgflow-role"
            bad = run.kind == "vault-approle-bad"
            secret_id = stage.secrets.wrong_secret_id if bad else stage.secrets.secret_id
            env["VAULT_SECRET_ID"] = secret_id
    return env


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name} {record.levelname} {text}")


def _run_in_process(
    stage: Stage, run: Run, env: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> bool:
    handler = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    capfd.readouterr()
    try:
        with (
            patch.dict(os.environ, env, clear=True),
            dg.instance_for_test() as instance,
        ):
            project = load_project()
            (spec,) = project.pipelines
            result = dg.materialize(
                [pipeline_asset(spec)],
                instance=instance,
                resources=build_definitions(project).resources,
                raise_on_error=False,
            )
            _collect_instance(stage, run.name, instance, Path(instance.root_directory))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out, err = capfd.readouterr()
    stage.places.append(Place(run.name, "captured stdout/stderr", out + err))
    stage.places.append(Place(run.name, "python logging", "\n".join(handler.lines)))
    return result.success


def _run_cli(stage: Stage, run: Run, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "pgflow.definitions", "--select", "landing/items"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    stage.places.append(Place(run.name, "CLI stdout", done.stdout))
    stage.places.append(Place(run.name, "CLI stderr", done.stderr))
    with (
        patch.dict(os.environ, env, clear=True),
        dg.DagsterInstance.from_config(str(stage.home)) as instance,
    ):
        _collect_instance(stage, run.name, instance, stage.home, latest_only=True)
    return done.returncode == 0


def _collect_instance(
    stage: Stage,
    run_name: str,
    instance: dg.DagsterInstance,
    folder: Path,
    latest_only: bool = False,
) -> None:
    """Every record the run left in the instance, and every file under its folder."""
    runs = instance.get_runs(limit=1) if latest_only else instance.get_runs()
    assert runs, "the run left no run record"
    records, errors, metadata = [], [], []
    for dagster_run in runs:
        for entry in instance.all_logs(dagster_run.run_id):
            records.append(serialize_value(entry))
            event = entry.dagster_event
            if event is None:
                records.append(entry.user_message)
                continue
            if event.is_step_failure or event.is_run_failure:
                data = event.event_specific_data
                error = getattr(data, "error", None)
                if error is not None:
                    errors.append(error.to_string())
                errors.append(event.message or "")
            if event.is_step_materialization:
                materialization = event.step_materialization_data.materialization
                metadata.extend(f"{k}: {v.value!r}" for k, v in materialization.metadata.items())
    stage.places.append(Place(run_name, "event log records", "\n".join(records)))
    stage.places.append(Place(run_name, "errors (message, causes, stacks)", "\n".join(errors)))
    stage.places.append(Place(run_name, "materialization metadata", "\n".join(metadata)))
    stage.places.append(Place(run_name, "run records", "\n".join(map(serialize_value, runs))))
    files = [p for p in folder.rglob("*") if p.is_file()]
    texts = [f"== {p}\n" + p.read_bytes().decode("utf-8", "replace") for p in files]
    stage.places.append(
        Place(run_name, f"files under the instance folder ({len(files)})", "\n".join(texts))
    )
    with psycopg.connect(stage.info.uri(stage.sink_db)) as conn:
        tables = conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        dump = [str(conn.execute(f"SELECT * FROM {t}").fetchall()) for (t,) in tables]
    stage.places.append(Place(run_name, "sink database tables", "\n".join(dump)))


def leaks(stage: Stage) -> list[str]:
    found = []
    for place in stage.places:
        for name, value in stage.secrets.values().items():
            if value in place.text:
                at = place.text.index(value)
                context = place.text[max(0, at - 120) : at + 40].replace(value, "<SECRET>")
                found.append(f"{place.run}: {place.name}: {name}: ...{context}...")
        for match in CONNECTION_STRING.finditer(place.text):
            context = place.text[max(0, match.start() - 120) : match.end() + 20]
            found.append(f"{place.run}: {place.name}: a connection string: ...{context}...")
    return found

"""pgflow.PgflowComponent in a Dagster project of its own, through `dg` as its users run it:
a project made by hand (pyproject.toml with [tool.dg], a defs folder; `dg scaffold project`
left dg for create-dagster, which needs uv and the network), `dg scaffold defs`, `dg list`,
`dg check defs`, `dg launch --assets` against throwaway clusters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import yaml

from pgflow.component import EXAMPLE_SPEC, PgflowComponent
from pgflow.config.loader import load_project
from pgflow.connections.resource import PostgresConnections
from pgflow_tests.bindings.conftest import PIPELINE_YAML, items_table

DG = str(Path(sys.executable).with_name("dg"))

PYPROJECT = """\
[project]
name = "shopflow"
version = "0.1.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "shopflow"
"""

DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shopflow"
    (root / "shopflow" / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "shopflow" / "__init__.py").write_text("")
    (root / "shopflow" / "defs" / "__init__.py").write_text("")
    (root / "shopflow" / "definitions.py").write_text(DEFINITIONS)
    return root


def environment(home: Path, **extra: str) -> dict[str, str]:
    """A shell's environment without pgflow's or Dagster's settings, and a DAGSTER_HOME of
    Dagster's defaults (SQLite storage)."""
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("")
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PGFLOW_"))}
    return {**kept, "DAGSTER_HOME": str(home), **extra}


def run_dg(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DG, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def dg(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = run_dg(project, env, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def listed_assets(project: Path, env: dict[str, str]) -> set[str]:
    listed = json.loads(dg(project, env, "list", "defs", "--json").stdout)
    return {asset["asset_key"] for asset in listed["assets"]}


def test_dg_lists_the_component_and_scaffolds_it(project: Path, tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    components = json.loads(dg(project, env, "list", "components", "--json").stdout)
    assert "pgflow.PgflowComponent" in {c["key"] for c in components["items"]}

    dg(project, env, "scaffold", "defs", "pgflow.PgflowComponent", "replication")
    folder = project / "shopflow" / "defs" / "replication"
    written = yaml.safe_load((folder / "defs.yaml").read_text())
    assert written == {"type": "pgflow.PgflowComponent", "attributes": {"specs": "specs"}}
    assert (folder / "specs" / "example.yaml").read_text() == EXAMPLE_SPEC
    # The example is all comments: the project loads, with no asset yet.
    assert "All definitions loaded successfully." in dg(project, env, "check", "defs").stdout
    assert listed_assets(project, env) == set()


def test_the_scaffolded_example_is_a_valid_spec_once_uncommented(tmp_path: Path) -> None:
    commented = EXAMPLE_SPEC.split("#\n", 1)[1]  # the spec below the explanation
    spec = tmp_path / "example.yaml"
    spec.write_text("\n".join(line.removeprefix("# ") for line in commented.splitlines()))
    project = load_project(spec, environ={})  # connections declared in the spec itself
    [only] = project.pipelines
    assert (only.name, only.sink.table.schema, only.sink.table.name) == (
        "landing_customers",
        "landing",
        "customers",
    )


def test_the_component_replicates_its_spec_folder_through_dg_launch(
    project: Path, tmp_path: Path, make_database: Callable[[], str]
) -> None:
    source_uri, sink_uri = make_database(), make_database()
    items_table(source_uri, rows=120)
    env = environment(
        tmp_path / "home", PGFLOW_CONN_SHOP=source_uri, PGFLOW_CONN_WAREHOUSE=sink_uri
    )
    dg(project, env, "scaffold", "defs", "pgflow.PgflowComponent", "replication")
    specs = project / "shopflow" / "defs" / "replication" / "specs"
    (specs / "items.yaml").write_text(PIPELINE_YAML.format(method="truncate_insert"))
    assert "landing/items" in listed_assets(project, env)

    done = dg(project, env, "launch", "--assets", "landing/items")
    # (Dagster 1.13.27 itself warns once here, a BetaWarning for `execution_type`: it adds the
    # defs.yaml's metadata to a component's checks, which makes them plain AssetsDefinitions,
    # and converts them back with that beta parameter. Any component with checks has it.)
    assert "SupersessionWarning" not in done.stdout + done.stderr
    query = "SELECT id, name, price FROM {} ORDER BY id"
    expected = rows(source_uri, query.format("public.items"))
    assert len(expected) == 120
    assert rows(sink_uri, query.format("landing.items")) == expected

    # A second one would clash on pgflow's project-wide names; the load says what to do.
    dg(project, env, "scaffold", "defs", "pgflow.PgflowComponent", "more")
    second = run_dg(project, env, "check", "defs")
    assert second.returncode != 0
    message = (
        f"pgflow: a project holds one PgflowComponent, and {specs.parent.with_name('more')} "
        f"and {specs.parent} are two; move the specs of one into the other's spec folder"
    )
    assert message in " ".join((second.stdout + second.stderr).split())


def rows(uri: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(uri) as conn:
        return conn.execute(query).fetchall()


def test_importing_pgflow_stays_free_of_dagster_until_the_component_is_asked_for() -> None:
    code = (
        "import sys, pgflow; print('dagster' in sys.modules, 'PgflowComponent' in dir(pgflow));"
        "pgflow.PgflowComponent; print('dagster' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True", "True"]


def test_connection_settings_resolve_into_the_pg_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPFLOW_VAULT", "https://vault.example:8200")
    component = PgflowComponent.resolve_from_dict(
        {
            "specs": "tables",
            "connections": {
                "vault_addr": "{{ env.SHOPFLOW_VAULT }}",
                "vault_mount": "kv",
                "application_name": "shopflow",
            },
        }
    )
    assert component.spec_path(Path("/defs/replication")) == Path("/defs/replication/tables")
    assert component.connections is not None
    pg = component.connections.resource()
    assert isinstance(pg, PostgresConnections)
    assert (pg.vault_addr, pg.vault_mount, pg.vault_prefix, pg.application_name) == (
        "https://vault.example:8200",
        "kv",
        None,
        "shopflow",
    )
    assert PgflowComponent.resolve_from_dict({}).specs == "specs"

"""pgflow as a Dagster Component, for a Dagster project of its own (made by create-dagster,
or any pyproject.toml with [tool.dg] and a defs folder):

    dg scaffold defs pgflow.PgflowComponent replication

writes `defs/replication/defs.yaml` (`type: pgflow.PgflowComponent`, `attributes: {specs:
specs}`) and an example spec in `defs/replication/specs/`. The component loads the specs of
that folder exactly as the `pgflow.definitions` code location loads $PGFLOW_CONFIG (the same
builder): assets, checks, schedules, sensors, the `pg` and `delta` resources, the executor.
One per project: its folder holds any number of specs.
"""

# No `from __future__ import annotations`: Dagster reads the fields' annotations at run time.
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import dagster as dg
from pydantic import BaseModel, Field

from pgflow.bindings.definitions import load_definitions
from pgflow.connections.resource import PostgresConnections

# The scaffolded spec: all comments, so the component loads (with no asset) until it is edited.
EXAMPLE_SPEC = """\
# A pgflow spec (README "Specs"): one source table into one target. Uncomment and edit; every
# *.yaml file in this folder is read. Each connection's libpq URI comes from the environment
# (PGFLOW_CONN_SHOP, PGFLOW_CONN_WAREHOUSE here) or from Vault (`type: vault`), never from here.
#
# connections:
#   shop: {type: env}
#   warehouse: {type: env}
#
# source:
#   type: postgres
#   connection_id: shop
#   table: {schema: public, name: customers}
# sink:
#   type: postgres
#   connection_id: warehouse
#   table: {schema: landing, name: customers}
#   strategy: {mode: full_refresh}
"""


class PgflowConnections(dg.Resolvable, dg.Model):
    """Settings of the `pg` resource that opens every connection. Secrets stay outside: a
    connection's URI in PGFLOW_CONN_<ID>, Vault's token in VAULT_TOKEN or VAULT_ROLE_ID and
    VAULT_SECRET_ID."""

    vault_addr: str | None = Field(
        default=None, description="Vault's address; default $VAULT_ADDR."
    )
    vault_mount: str | None = Field(
        default=None, description="The KV v2 mount; default $PGFLOW_VAULT_MOUNT or 'secret'."
    )
    vault_prefix: str | None = Field(
        default=None,
        description="The path under the mount; default $PGFLOW_VAULT_PREFIX or 'pgflow'.",
    )
    application_name: str = Field(default="pgflow", description="Shown in pg_stat_activity.")

    def resource(self) -> PostgresConnections:
        return PostgresConnections(**self.model_dump())


# Project root -> the folder of its PgflowComponent: the jobs, schedules, sensors and source
# assets pgflow defines have project-wide names, so a second component would clash with the
# first on each (one folder of specs holds any number of pipelines, subfolders included).
_LOADED: dict[Path, Path] = {}


def only_component(project_root: Path, folder: Path) -> None:
    first = _LOADED.setdefault(project_root.resolve(), folder.resolve())
    if first != folder.resolve():
        raise dg.DagsterInvalidDefinitionError(
            f"pgflow: a project holds one PgflowComponent, and {first} and {folder} are two; "
            "move the specs of one into the other's spec folder (subfolders are read too)"
        )


class PgflowScaffoldParams(BaseModel):
    specs: str = Field(default="specs", description="The spec folder to create, in the new folder.")


class PgflowScaffolder(dg.Scaffolder[PgflowScaffoldParams]):
    """`dg scaffold defs pgflow.PgflowComponent <name>`: defs.yaml and an example spec."""

    @classmethod
    def get_scaffold_params(cls) -> type[PgflowScaffoldParams]:
        return PgflowScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[PgflowScaffoldParams]) -> None:
        specs = request.params.specs
        dg.scaffold_component(request, {"specs": specs})
        folder = request.target_path / specs
        folder.mkdir(parents=True, exist_ok=True)
        example = folder / "example.yaml"
        if not example.exists():
            example.write_text(EXAMPLE_SPEC, encoding="utf-8")


@dg.scaffold_with(PgflowScaffolder)
@dataclass
class PgflowComponent(dg.Component, dg.Resolvable):
    """PostgreSQL tables replicated into Postgres and Delta Lake: the pipelines of a folder of
    pgflow specs as Dagster assets, with their checks, schedules and sensors."""

    specs: Annotated[
        str,
        dg.Resolver.default(
            description="A spec file or folder of *.yaml specs, relative to this defs.yaml's folder."
        ),
    ] = "specs"
    connections: Annotated[
        PgflowConnections | None,
        dg.Resolver.default(description="Settings of the `pg` resource (Vault, application_name)."),
    ] = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        only_component(context.project_root, context.path)
        connections = self.connections.resource() if self.connections else None
        return load_definitions(self.spec_path(context.path), connections, resolve=False)

    def spec_path(self, folder: Path) -> Path:
        """`specs` below the defs.yaml's folder; an absolute path stays as it is."""
        return folder / Path(self.specs).expanduser()

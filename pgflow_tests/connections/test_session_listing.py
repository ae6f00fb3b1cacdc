"""The schema listing of a schema-wide spec (at code-location load) runs as the declared
connection's role: a table the role cannot read is listed unreadable (the login user, a
superuser, could read it)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from psycopg import sql

from pgflow.config.errors import SpecError
from pgflow.config.loader import load_project
from pgflow.sources.table_listing import live_lister
from pgflow_tests.pg import execute

SPEC = """
connections:
  shop:
    set_role: {role}
    session_settings: {{app.tenant: acme}}
source:
  type: postgres
  connection_id: shop
  table: {{schema: app, name: "*", exclude: [{exclude}]}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing}}
  strategy: {{mode: full_refresh}}
"""


def test_listing_runs_as_the_role(fresh_db: str, tmp_path: Path) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    execute(
        fresh_db,
        sql.SQL(
            "CREATE ROLE {r} NOLOGIN; CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO {r};"
            " CREATE TABLE app.open (id int PRIMARY KEY); CREATE TABLE app.closed (id int"
            " PRIMARY KEY); GRANT SELECT ON app.open TO {r}"
        ).format(r=ident),
    )
    try:
        env = {"PGFLOW_CONN_SHOP": fresh_db, "PGFLOW_CONN_WAREHOUSE": fresh_db}
        (tmp_path / "shop.yaml").write_text(SPEC.format(role=role, exclude="nothing"))
        with pytest.raises(SpecError, match="the source role may not read closed of schema app"):
            load_project(tmp_path, environ=env, lister=live_lister(env), refresh=True)
        (tmp_path / "shop.yaml").write_text(SPEC.format(role=role, exclude="closed"))
        project = load_project(tmp_path, environ=env, lister=live_lister(env), refresh=True)
        assert [p.source.table.name for p in project.pipelines if p.source.table] == ["open"]
        listed = {t.name: t.readable for t in project.listings[0].tables}
        assert listed == {"closed": False, "open": True}
    finally:
        execute(fresh_db, sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=ident))

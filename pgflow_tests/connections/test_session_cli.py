"""set_role and session_settings through `dagster asset materialize`, as users run it: a
row-level security policy and an audit trigger on the target see the role and the tenant,
and a secret setting never reaches the run's output or its event log."""

from __future__ import annotations

import uuid

import pytest
from dagster._serdes import serialize_value
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgflow_tests.bindings.conftest import DagsterSetup, empty_dagster_setup, items_table
from pgflow_tests.bindings.test_definitions_cli import instance, materialize, rows
from pgflow_tests.pg import execute

SECRET = "tenant-Token-77f3e1b9"

SPEC = """
connections:
  warehouse:
    set_role: {role}
    session_settings:
      app.tenant: acme
      app.token: {{env: PGFLOW_TEST_TENANT_TOKEN}}
{extra}
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: incremental_append}}
"""

TARGET = """
CREATE ROLE {role} NOLOGIN;
GRANT CREATE ON DATABASE {db} TO {role};
CREATE SCHEMA landing;
GRANT USAGE, CREATE ON SCHEMA landing TO {role};
CREATE TABLE landing.items (
  id int PRIMARY KEY, name text NOT NULL, price numeric(8,2), added timestamptz,
  tenant text NOT NULL DEFAULT current_setting('app.tenant'));
INSERT INTO landing.items VALUES (1000, 'not yours', 1, now(), 'other');
ALTER TABLE landing.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_tenant ON landing.items
  USING (tenant = current_setting('app.tenant'))
  WITH CHECK (tenant = current_setting('app.tenant') AND current_user = '{role}');
GRANT ALL ON landing.items TO {role};
CREATE TABLE landing.audit (who text, tenant text, token_length int);
GRANT INSERT ON landing.audit TO {role};
CREATE FUNCTION landing.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO landing.audit VALUES (current_user, current_setting('app.tenant'),
                                    length(current_setting('app.token')));
  RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT ON landing.items FOR EACH ROW
  EXECUTE FUNCTION landing.audit_row();
"""


@pytest.fixture
def setup(local_pg, make_database, tmp_path) -> DagsterSetup:  # type: ignore[no-untyped-def]
    return empty_dagster_setup(local_pg, make_database, tmp_path, PGFLOW_TEST_TENANT_TOKEN=SECRET)


def event_log_text(setup: DagsterSetup) -> str:
    """Every event of every run, serialized as the instance stores it."""
    with instance(setup) as inst:
        runs = inst.get_runs()
        texts = [serialize_value(run) for run in runs]
        for run in runs:
            texts += [serialize_value(entry) for entry in inst.all_logs(run.run_id)]
        assert len(texts) > len(runs)  # the runs logged events
        return "\n".join(texts)


def test_the_load_writes_as_the_role_for_the_tenant(setup: DagsterSetup) -> None:
    role = f"tenant_writer_{uuid.uuid4().hex[:8]}"
    db = str(conninfo_to_dict(setup.sink_uri)["dbname"])
    try:
        execute(setup.sink_uri, TARGET.format(role=role, db=sql.Identifier(db).as_string()))
        items_table(setup.source_uri, rows=40)
        (setup.specs / "items.yaml").write_text(SPEC.format(role=role, extra=""))
        run = materialize(setup, "landing/items")
        assert run.returncode == 0, run.stderr[-3000:]

        # Every row went in as the role, for the tenant; the other tenant's row was not seen.
        assert rows(
            setup.sink_uri, "SELECT tenant, count(*) FROM landing.items GROUP BY 1 ORDER BY 1"
        ) == [
            ("acme", 40),
            ("other", 1),
        ]
        assert rows(
            setup.sink_uri,
            "SELECT who, tenant, token_length, count(*) FROM landing.audit GROUP BY 1, 2, 3",
        ) == [(role, "acme", len(SECRET), 40)]
        assert SECRET not in run.stdout + run.stderr
        assert SECRET not in event_log_text(setup)

        # A secret value Postgres refuses: the run fails naming the field, never the value.
        bad = "      statement_timeout: {env: PGFLOW_TEST_TENANT_TOKEN}"
        (setup.specs / "items.yaml").write_text(SPEC.format(role=role, extra=bad))
        failed = materialize(setup, "landing/items")
        assert failed.returncode != 0
        output = failed.stdout + failed.stderr
        assert "connections.warehouse.session_settings.statement_timeout" in output
        assert SECRET not in output
        assert SECRET not in event_log_text(setup)
        assert rows(setup.sink_uri, "SELECT count(*) FROM landing.audit") == [(40,)]
    finally:
        execute(
            setup.sink_uri,
            sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=sql.Identifier(role)),
        )

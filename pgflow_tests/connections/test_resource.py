"""The `PostgresConnections` resource: caching, env/vault resolution and real connections.

No Vault server can be installed where these tests run. The Vault path is therefore exercised
with the REAL `hvac` client talking HTTP to `FakeVault` (`vault_server.py`), a small local
server that implements the slice of Vault's HTTP API pgflow uses with Vault's own response
shapes. Connections are opened against the real local Postgres cluster of the `local_pg`
session fixture (databases "source" and "sink").
"""

from __future__ import annotations

import dagster as dg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgflow.connections.resource import PostgresConnections
from pgflow.connections.secrets import ConnectionConfigError
from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.connections.vault_server import FakeVault

WRONG_PASSWORD = "definitely-Wrong-pw-4711"
PARTS = {"host": "db.internal", "port": "5432", "dbname": "oltp", "user": "u", "password": "pw-1"}


def pg_parts(local_pg: ClusterInfo, dbname: str = "source", **overrides: str) -> dict[str, str]:
    """host/port/dbname/user/password of the local cluster, as a Vault secret would hold them."""
    parts = {
        "host": local_pg.host,
        "port": str(local_pg.port),
        "dbname": dbname,
        "user": local_pg.user,
        "password": local_pg.password,
    }
    return {**parts, **overrides}


# --- resolution and caching (no database needed) -----------------------------------------------


def test_conninfo_is_cached_per_instance(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    resource = PostgresConnections()

    first = resource.conninfo("oltp", "vault")
    second = resource.conninfo("oltp", "vault")
    assert first == second
    assert conninfo_to_dict(first) == PARTS
    assert len(vault.reads("secret", "pgflow/oltp")) == 1
    assert len(vault.requests) == 1

    # The cache belongs to the instance (one run step): a new instance reads Vault again.
    PostgresConnections().conninfo("oltp", "vault")
    assert len(vault.reads("secret", "pgflow/oltp")) == 2


def test_cache_is_keyed_by_connection_id(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/a", {**PARTS, "dbname": "a"})
    vault.put_secret("secret", "pgflow/b", {**PARTS, "dbname": "b"})
    resource = PostgresConnections()
    for _ in range(3):
        assert conninfo_to_dict(resource.conninfo("a", "vault"))["dbname"] == "a"
        assert conninfo_to_dict(resource.conninfo("b", "vault"))["dbname"] == "b"
    assert [r.path for r in vault.requests] == [
        "/v1/secret/data/pgflow/a",
        "/v1/secret/data/pgflow/b",
    ]


def test_failures_are_not_cached(vault: FakeVault) -> None:
    resource = PostgresConnections()
    with pytest.raises(ConnectionConfigError, match=r"secret/pgflow/oltp .*no secret there"):
        resource.conninfo("oltp", "vault")
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    assert conninfo_to_dict(resource.conninfo("oltp", "vault")) == PARTS


def test_approle_through_the_resource(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    vault.add_approle("role-1", "secret-1", "hvs.from-approle")
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("VAULT_ROLE_ID", "role-1")
    monkeypatch.setenv("VAULT_SECRET_ID", "secret-1")
    resource = PostgresConnections()
    resource.conninfo("oltp", "vault")
    resource.conninfo("oltp", "vault")
    assert [(r.method, r.path, r.token) for r in vault.requests] == [
        ("POST", "/v1/auth/approle/login", None),
        ("GET", "/v1/secret/data/pgflow/oltp", "hvs.from-approle"),
    ]


def test_resource_config_overrides_environment(
    vault: FakeVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.add_mount("kv")
    vault.put_secret("kv", "team/oltp", PARTS)
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")  # would fail if used
    monkeypatch.setenv("PGFLOW_VAULT_MOUNT", "secret")
    monkeypatch.setenv("PGFLOW_VAULT_PREFIX", "pgflow")
    resource = PostgresConnections(vault_addr=vault.url, vault_mount="kv", vault_prefix="team")
    assert conninfo_to_dict(resource.conninfo("oltp", "vault")) == PARTS
    assert [r.path for r in vault.requests] == ["/v1/kv/data/team/oltp"]


def test_vault_error_names_connection_and_path(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", {**PARTS, "passwd": "leak-me-not"})
    with pytest.raises(ConnectionConfigError) as excinfo:
        PostgresConnections().conninfo("oltp", "vault")
    message = str(excinfo.value)
    assert message.startswith(
        "connection 'oltp' (Vault secret/pgflow/oltp): unknown key(s) passwd;"
    )
    assert "leak-me-not" not in message and "pw-1" not in message


def test_env_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "postgresql://app:pw@localhost:5432/app"
    monkeypatch.setenv("PGFLOW_CONN_POSTGRES_OLTP_EU", uri)
    assert PostgresConnections().conninfo("postgres-oltp.eu") == uri
    assert PostgresConnections().conninfo("postgres-oltp.eu", "env") == uri


def test_env_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGFLOW_CONN_NOPE", raising=False)
    with pytest.raises(
        ConnectionConfigError, match=r"environment variable PGFLOW_CONN_NOPE is not set"
    ):
        PostgresConnections().conninfo("nope")


def test_unknown_connection_type() -> None:
    with pytest.raises(
        ConnectionConfigError,
        match=r"connection 'x': connection_type 'ldap' is unknown; use env or vault",
    ):
        PostgresConnections().conninfo("x", "ldap")


def test_vault_without_addr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    with pytest.raises(ConnectionConfigError, match=r"connection_type vault needs VAULT_ADDR"):
        PostgresConnections().conninfo("oltp", "vault")


# --- real connections --------------------------------------------------------------------------


def test_connect_through_vault(vault: FakeVault, local_pg: ClusterInfo) -> None:
    vault.put_secret("secret", "pgflow/oltp", pg_parts(local_pg, "source"))
    vault.put_secret("secret", "pgflow/warehouse", pg_parts(local_pg, "sink"))
    resource = PostgresConnections()

    with resource.connect("oltp", "vault") as conn:
        row = conn.execute(
            "select current_database(), current_user, current_setting('application_name')"
        ).fetchone()
    assert row == ("source", local_pg.user, "pgflow")
    assert conn.closed

    with resource.connect("oltp", "vault") as conn, resource.connect("warehouse", "vault") as other:
        assert conn.execute("select current_database()").fetchone() == ("source",)
        assert other.execute("select current_database()").fetchone() == ("sink",)
    # Three connects, one Vault read per connection id.
    assert len(vault.reads()) == 2


def test_connect_through_vault_url(vault: FakeVault, local_pg: ClusterInfo) -> None:
    vault.put_secret("secret", "pgflow/oltp", {"url": local_pg.uri("sink")})
    with PostgresConnections().connect("oltp", "vault") as conn:
        assert conn.execute("select current_database()").fetchone() == ("sink",)


def test_connect_through_vault_url_and_password(vault: FakeVault, local_pg: ClusterInfo) -> None:
    url = make_conninfo(local_pg.uri("sink"), password="")
    assert local_pg.password not in url
    vault.put_secret("secret", "pgflow/oltp", {"url": url, "password": local_pg.password})
    with PostgresConnections().connect("oltp", "vault") as conn:
        assert conn.execute("select current_database()").fetchone() == ("sink",)


def test_connect_through_env(monkeypatch: pytest.MonkeyPatch, local_pg: ClusterInfo) -> None:
    monkeypatch.setenv("PGFLOW_CONN_SOURCE_DB", local_pg.uri("source"))
    resource = PostgresConnections(application_name="pgflow-test")
    with resource.connect("source-db") as conn:
        row = conn.execute("select current_database(), current_setting('application_name')")
        assert row.fetchone() == ("source", "pgflow-test")


def test_connect_kwargs_reach_psycopg(vault: FakeVault, local_pg: ClusterInfo) -> None:
    vault.put_secret("secret", "pgflow/oltp", pg_parts(local_pg))
    with PostgresConnections().connect("oltp", "vault", autocommit=True) as conn:
        assert conn.autocommit
        assert conn.execute("show application_name").fetchone() == ("pgflow",)


def test_connection_level_application_name_wins(vault: FakeVault, local_pg: ClusterInfo) -> None:
    """`application_name` is an allowed per-connection key; the resource default must not
    silently override it (a psycopg.connect kwarg beats the conninfo)."""
    vault.put_secret("secret", "pgflow/oltp", {**pg_parts(local_pg), "application_name": "etl-x"})
    with PostgresConnections().connect("oltp", "vault") as conn:
        assert conn.execute("select current_setting('application_name')").fetchone() == ("etl-x",)
    explicit = PostgresConnections().connect("oltp", "vault", application_name="explicit")
    with explicit as conn:
        assert conn.execute("select current_setting('application_name')").fetchone() == (
            "explicit",
        )


def test_uri_application_name_wins(monkeypatch: pytest.MonkeyPatch, local_pg: ClusterInfo) -> None:
    uri = make_conninfo(local_pg.uri("source"), application_name="from-uri")
    monkeypatch.setenv("PGFLOW_CONN_OLTP", uri)
    with PostgresConnections().connect("oltp") as conn:
        assert conn.execute("select current_setting('application_name')").fetchone() == (
            "from-uri",
        )


def test_wrong_password_via_vault(vault: FakeVault, local_pg: ClusterInfo) -> None:
    vault.put_secret("secret", "pgflow/oltp", pg_parts(local_pg, password=WRONG_PASSWORD))
    with (
        pytest.raises(ConnectionConfigError) as excinfo,
        PostgresConnections().connect("oltp", "vault"),
    ):
        pytest.fail("connected with a wrong password")
    message = str(excinfo.value)
    assert message.startswith("could not connect to 'oltp' (vault): ")
    assert "password authentication failed" in message
    assert WRONG_PASSWORD not in message
    assert local_pg.password not in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_wrong_password_via_env_uri(monkeypatch: pytest.MonkeyPatch, local_pg: ClusterInfo) -> None:
    uri = make_conninfo(local_pg.uri("source"), password=WRONG_PASSWORD)
    monkeypatch.setenv("PGFLOW_CONN_OLTP", uri)
    with pytest.raises(ConnectionConfigError) as excinfo, PostgresConnections().connect("oltp"):
        pytest.fail("connected with a wrong password")
    message = str(excinfo.value)
    assert message.startswith("could not connect to 'oltp' (env): ")
    assert WRONG_PASSWORD not in message
    assert local_pg.password not in message


def test_resource_in_a_dagster_run(vault: FakeVault, local_pg: ClusterInfo) -> None:
    """As Dagster builds it for a run: resolved lazily, cached within the step, usable."""
    vault.put_secret("secret", "pgflow/oltp", pg_parts(local_pg, "source"))
    seen: list[str] = []

    @dg.asset
    def probe(pg: PostgresConnections) -> None:
        for _ in range(2):
            with pg.connect("oltp", "vault") as conn:
                seen.append(conn.execute("select current_database()").fetchone()[0])

    assert vault.requests == []
    result = dg.materialize([probe], resources={"pg": PostgresConnections()})
    assert result.success
    assert seen == ["source", "source"]
    assert len(vault.reads()) == 1

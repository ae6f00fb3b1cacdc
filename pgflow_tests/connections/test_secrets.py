"""Resolving connection ids to conninfo strings, from the environment and from Vault KV v2.

No Vault server can be installed where these tests run. The Vault path is therefore exercised
with the REAL `hvac` client talking HTTP to `FakeVault` (`vault_server.py`), a small local
server that implements the slice of Vault's HTTP API pgflow uses (KV v2 read/write, AppRole
login, token checks with per-token path prefixes) with Vault's own response shapes and status
codes. What is not covered: TLS, namespaces' server-side semantics, token renewal and leases.
"""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgflow.config.environment import env_var_for
from pgflow.connections.secrets import (
    ConnectionConfigError,
    VaultSettings,
    conninfo_from_env,
    conninfo_from_secret,
    read_vault_secret,
    redact,
    secret_values,
)
from pgflow_tests.connections.conftest import TOKEN
from pgflow_tests.connections.vault_server import FakeVault

PASSWORD = "s3cret-Pa55word"
PARTS = {
    "host": "db.internal",
    "port": "6543",
    "dbname": "oltp",
    "user": "replicator",
    "password": PASSWORD,
    "sslmode": "require",
}


def resolve(connection_id: str) -> str:
    """What the resource does for connection_type vault, from the current process environment."""
    settings = VaultSettings.from_environ(os.environ)
    return conninfo_from_secret(read_vault_secret(settings, connection_id), f"'{connection_id}'")


# --- env ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection_id", "variable"),
    [
        ("postgres-oltp.eu", "PGFLOW_CONN_POSTGRES_OLTP_EU"),
        ("warehouse", "PGFLOW_CONN_WAREHOUSE"),
        ("Mixed_Case-2", "PGFLOW_CONN_MIXED_CASE_2"),
    ],
)
def test_env_var_naming(connection_id: str, variable: str) -> None:
    assert env_var_for(connection_id) == variable
    uri = "postgresql://app:pw@localhost:5432/app"
    assert conninfo_from_env(connection_id, {variable: uri}) == uri


def test_env_accepts_key_value_conninfo() -> None:
    conninfo = "host=localhost port=5432 dbname=app user=app"
    assert conninfo_from_env("app", {"PGFLOW_CONN_APP": conninfo}) == conninfo


@pytest.mark.parametrize("environ", [{}, {"PGFLOW_CONN_POSTGRES_OLTP_EU": ""}])
def test_env_missing_variable_names_it(environ: dict[str, str]) -> None:
    with pytest.raises(ConnectionConfigError) as excinfo:
        conninfo_from_env("postgres-oltp.eu", environ)
    message = str(excinfo.value)
    assert "environment variable PGFLOW_CONN_POSTGRES_OLTP_EU is not set" in message
    assert "connection 'postgres-oltp.eu'" in message


@pytest.mark.parametrize(
    "bad",
    [
        f"postgresql://app:{PASSWORD}@[::1/app",  # libpq quotes this whole URI in its error
        f"postgresql://app:{PASSWORD}@localhost/app?no_such_option=1",
        f"host=localhost password={PASSWORD} user='app",
    ],
)
def test_env_malformed_uri_error_hides_password(bad: str) -> None:
    with pytest.raises(ConnectionConfigError) as excinfo:
        conninfo_from_env("oltp", {"PGFLOW_CONN_OLTP": bad})
    message = str(excinfo.value)
    assert "PGFLOW_CONN_OLTP is not a valid libpq URI" in message
    assert PASSWORD not in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_libpq_itself_would_leak_the_password() -> None:
    """Guards the test above: libpq's own message does quote the URI, password included."""
    with pytest.raises(psycopg.ProgrammingError, match=PASSWORD):
        conninfo_to_dict(f"postgresql://app:{PASSWORD}@[::1/app")


# --- Vault settings ----------------------------------------------------------------------------


def test_vault_settings_defaults() -> None:
    settings = VaultSettings.from_environ({"VAULT_ADDR": "http://vault:8200", "VAULT_TOKEN": "t"})
    assert (settings.mount, settings.prefix, settings.token) == ("secret", "pgflow", "t")
    assert settings.secret_path("postgres-oltp.eu") == "pgflow/postgres-oltp.eu"


def test_vault_settings_overrides_and_empty_prefix() -> None:
    environ = {"VAULT_ADDR": "http://vault:8200", "PGFLOW_VAULT_PREFIX": "/teams/data/"}
    assert VaultSettings.from_environ(environ).secret_path("x") == "teams/data/x"
    settings = VaultSettings.from_environ(environ, addr="http://other:8200", prefix="/", mount="kv")
    assert (settings.addr, settings.mount, settings.secret_path("x")) == (
        "http://other:8200",
        "kv",
        "x",
    )


@pytest.mark.parametrize("environ", [{}, {"VAULT_ADDR": ""}, {"VAULT_TOKEN": "t"}])
def test_vault_missing_addr(environ: dict[str, str]) -> None:
    with pytest.raises(ConnectionConfigError, match=r"connection_type vault needs VAULT_ADDR"):
        VaultSettings.from_environ(environ)


def test_vault_missing_credentials(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("VAULT_ROLE_ID", "role-only")  # a role id without a secret id is not enough
    with pytest.raises(
        ConnectionConfigError, match=r"needs VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID"
    ):
        resolve("oltp")
    assert vault.requests == []


# --- Vault with a token ------------------------------------------------------------------------


def test_vault_secret_with_url(vault: FakeVault) -> None:
    url = f"postgresql://replicator:{PASSWORD}@db.internal:6543/oltp"
    vault.put_secret("secret", "pgflow/postgres-oltp.eu", {"url": url})

    assert resolve("postgres-oltp.eu") == url
    [read] = vault.requests
    assert (read.method, read.path) == ("GET", "/v1/secret/data/pgflow/postgres-oltp.eu")
    assert read.token == TOKEN


def test_vault_secret_with_url_and_ssl_options(vault: FakeVault) -> None:
    url = f"postgresql://replicator:{PASSWORD}@db.internal:6543/oltp"
    vault.put_secret("secret", "pgflow/oltp", {"url": url, "sslmode": "verify-full"})

    params = conninfo_to_dict(resolve("oltp"))
    assert params == {**PARTS, "sslmode": "verify-full"}


def test_vault_url_completed_by_separate_password(vault: FakeVault) -> None:
    """A password kept next to (not inside) the URL is used, not silently dropped."""
    url = "postgresql://replicator@db.internal:6543/oltp?sslmode=require"
    vault.put_secret("secret", "pgflow/oltp", {"url": url, "password": PASSWORD, "user": None})
    assert conninfo_to_dict(resolve("oltp")) == PARTS


def test_vault_secret_with_parts(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    assert conninfo_to_dict(resolve("oltp")) == PARTS


def test_vault_secret_with_numeric_port_and_no_password(vault: FakeVault) -> None:
    vault.put_secret(
        "secret", "pgflow/oltp", {"host": "h", "port": 6543, "dbname": "d", "user": "u"}
    )
    assert conninfo_to_dict(resolve("oltp")) == {
        "host": "h",
        "port": "6543",
        "dbname": "d",
        "user": "u",
    }


def test_vault_reads_latest_version(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", {**PARTS, "dbname": "old"})
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    assert conninfo_to_dict(resolve("oltp"))["dbname"] == "oltp"


def test_vault_mount_and_prefix_overrides(
    vault: FakeVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.add_mount("kv-data")
    vault.put_secret("kv-data", "teams/etl/oltp", PARTS)
    vault.put_secret("secret", "pgflow/oltp", {**PARTS, "dbname": "wrong"})
    monkeypatch.setenv("PGFLOW_VAULT_MOUNT", "kv-data")
    monkeypatch.setenv("PGFLOW_VAULT_PREFIX", "teams/etl")

    assert conninfo_to_dict(resolve("oltp")) == PARTS
    assert [r.path for r in vault.requests] == ["/v1/kv-data/data/teams/etl/oltp"]


def test_vault_empty_prefix(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put_secret("secret", "oltp", PARTS)
    monkeypatch.setenv("PGFLOW_VAULT_PREFIX", "/")
    assert conninfo_to_dict(resolve("oltp")) == PARTS
    assert [r.path for r in vault.requests] == ["/v1/secret/data/oltp"]


def test_vault_namespace_header(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
    resolve("oltp")
    assert vault.requests[-1].headers.get("x-vault-namespace") == "team-a"


def test_vault_missing_secret_names_the_path(vault: FakeVault) -> None:
    with pytest.raises(ConnectionConfigError) as excinfo:
        resolve("postgres-oltp.eu")
    message = str(excinfo.value)
    assert "connection 'postgres-oltp.eu'" in message
    assert f"Vault KV v2 secret/pgflow/postgres-oltp.eu at {vault.url}" in message
    assert "no secret there" in message


def test_vault_deleted_secret_is_missing(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    vault.delete_secret("secret", "pgflow/oltp")
    with pytest.raises(ConnectionConfigError, match=r"secret/pgflow/oltp .*: no secret there"):
        resolve("oltp")


def test_vault_forbidden_path(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    vault.put_secret("secret", "pgflow-other/oltp", PARTS)
    vault.add_token("hvs.limited", allowed_prefixes=["secret/data/pgflow-other/"])
    monkeypatch.setenv("VAULT_TOKEN", "hvs.limited")

    with pytest.raises(ConnectionConfigError) as excinfo:
        resolve("oltp")
    message = str(excinfo.value)
    assert "secret/pgflow/oltp" in message
    assert "permission denied; give the token a policy with read on this path" in message
    assert "hvs.limited" not in message
    assert vault.requests[-1].token == "hvs.limited"


def test_vault_unknown_token_is_forbidden(
    vault: FakeVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    monkeypatch.setenv("VAULT_TOKEN", "hvs.not-a-token")
    with pytest.raises(ConnectionConfigError, match=r"permission denied") as excinfo:
        resolve("oltp")
    assert "hvs.not-a-token" not in str(excinfo.value)


def test_vault_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeVault() as server:
        dead = server.url  # a port nothing listens on once the server is stopped
    monkeypatch.setenv("VAULT_ADDR", dead)
    monkeypatch.setenv("VAULT_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with pytest.raises(ConnectionConfigError) as excinfo:
        resolve("oltp")
    assert str(excinfo.value).endswith("Vault request failed (ConnectionError)")
    assert dead in str(excinfo.value)
    assert TOKEN not in str(excinfo.value)


def test_vault_unknown_keys_are_named_not_shown(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", {**PARTS, "pasword": "typo-value-XYZ", "extra": "v2"})
    with pytest.raises(ConnectionConfigError) as excinfo:
        resolve("oltp")
    message = str(excinfo.value)
    assert "unknown key(s) extra, pasword; allowed: url, host, port" in message
    assert "typo-value-XYZ" not in message
    assert PASSWORD not in message


def test_vault_missing_parts(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", {"port": "5432", "password": PASSWORD, "host": ""})
    with pytest.raises(ConnectionConfigError) as excinfo:
        resolve("oltp")
    message = str(excinfo.value)
    assert "missing host, dbname, user" in message
    assert PASSWORD not in message


def test_vault_malformed_url_hides_password(vault: FakeVault) -> None:
    vault.put_secret("secret", "pgflow/oltp", {"url": f"postgresql://u:{PASSWORD}@[::1/db"})
    with pytest.raises(ConnectionConfigError) as excinfo:
        resolve("oltp")
    assert "key url is not a valid libpq URI" in str(excinfo.value)
    assert PASSWORD not in str(excinfo.value)


# --- Vault with AppRole ------------------------------------------------------------------------


def test_vault_approle_login(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    vault.add_approle(
        "role-123", "secret-456", "hvs.approle-token", allowed_prefixes=["secret/data/pgflow/"]
    )
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("VAULT_ROLE_ID", "role-123")
    monkeypatch.setenv("VAULT_SECRET_ID", "secret-456")

    assert conninfo_to_dict(resolve("oltp")) == PARTS
    login, read = vault.requests
    assert (login.method, login.path) == ("POST", "/v1/auth/approle/login")
    assert login.body == {"role_id": "role-123", "secret_id": "secret-456"}
    assert (read.path, read.token) == ("/v1/secret/data/pgflow/oltp", "hvs.approle-token")


def test_vault_token_wins_over_approle(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    monkeypatch.setenv("VAULT_ROLE_ID", "role-123")
    monkeypatch.setenv("VAULT_SECRET_ID", "secret-456")
    resolve("oltp")
    assert [(r.path, r.token) for r in vault.requests] == [("/v1/secret/data/pgflow/oltp", TOKEN)]


def test_vault_approle_wrong_secret_id(vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    vault.add_approle("role-123", "secret-456", "hvs.approle-token")
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("VAULT_ROLE_ID", "role-123")
    monkeypatch.setenv("VAULT_SECRET_ID", "wrong-secret-id-789")

    with pytest.raises(ConnectionConfigError) as excinfo:
        resolve("oltp")
    message = str(excinfo.value)
    assert message == (
        f"Vault AppRole login at {vault.url} failed (InvalidRequest); "
        f"check VAULT_ROLE_ID and VAULT_SECRET_ID"
    )
    assert "wrong-secret-id-789" not in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
    assert [r.path for r in vault.requests] == ["/v1/auth/approle/login"]  # no read attempted


def test_vault_approle_token_without_access(
    vault: FakeVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put_secret("secret", "pgflow/oltp", PARTS)
    vault.add_approle(
        "role-123", "secret-456", "hvs.narrow", allowed_prefixes=["secret/data/elsewhere/"]
    )
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("VAULT_ROLE_ID", "role-123")
    monkeypatch.setenv("VAULT_SECRET_ID", "secret-456")
    with pytest.raises(ConnectionConfigError, match=r"secret/pgflow/oltp .*permission denied"):
        resolve("oltp")


# --- redaction helpers -------------------------------------------------------------------------


def test_secret_values_and_redact() -> None:
    conninfo = f"host=h user=u password={PASSWORD} sslpassword=keypass dbname=d"
    assert sorted(secret_values(conninfo)) == sorted([PASSWORD, "keypass"])
    text = f"failed for {PASSWORD} and keypass; uri postgresql://u:other@h/d"
    assert (
        redact(text, secret_values(conninfo))
        == "failed for *** and ***; uri postgresql://u:***@h/d"
    )

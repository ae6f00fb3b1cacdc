"""set_role and session_settings on every session the resource opens: against the real local
cluster, with a role made for each test (roles are cluster-wide, so each has its own name)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgflow.connections.resource import (
    ConnectionSessionConfig,
    PostgresConnections,
    SessionSettingConfig,
)
from pgflow.connections.secrets import ConnectionConfigError
from pgflow_tests.pg import execute

SECRET = "tok-Very-Secret-9281"


@pytest.fixture
def role(fresh_db: str) -> Iterator[str]:
    """A NOLOGIN role the login user (a superuser) may SET ROLE to."""
    name = f"writer_{uuid.uuid4().hex[:8]}"
    execute(fresh_db, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    yield name
    execute(fresh_db, sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def resource(monkeypatch: pytest.MonkeyPatch, uri: str, **session: object) -> PostgresConnections:
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", uri)
    config = ConnectionSessionConfig(**session)  # type: ignore[arg-type]
    return PostgresConnections(sessions={"warehouse": config})


def settings(*pairs: tuple[str, str | None, str | None]) -> list[SessionSettingConfig]:
    return [SessionSettingConfig(name=n, value=v, env=e) for n, v, e in pairs]


def test_every_session_runs_as_the_role_with_the_settings(
    monkeypatch: pytest.MonkeyPatch, fresh_db: str, role: str
) -> None:
    monkeypatch.setenv("TENANT_TOKEN", SECRET)
    pg = resource(
        monkeypatch,
        fresh_db,
        set_role=role,
        settings=settings(
            ("app.tenant", "acme", None),
            ("statement_timeout", "12s", None),
            ("app.token", None, "TENANT_TOKEN"),
        ),
    )
    query = (
        "SELECT current_user, session_user <> current_user, current_setting('app.tenant'),"
        " current_setting('statement_timeout'), current_setting('app.token')"
    )
    expected = (role, True, "acme", "12s", SECRET)
    with pg.connect("warehouse", autocommit=True) as conn:
        assert conn.execute(query).fetchone() == expected
    # Not autocommit: the set-up was committed, so a rollback of the caller's work keeps it.
    with pg.connect("warehouse") as conn:
        conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute(query).fetchone() == expected
    # The resource's config, which Dagster shows, names the variable, never the secret.
    assert SECRET not in repr(pg) and "TENANT_TOKEN" in repr(pg)


def test_connections_without_settings_are_untouched(
    monkeypatch: pytest.MonkeyPatch, fresh_db: str
) -> None:
    monkeypatch.setenv("PGFLOW_CONN_OTHER", fresh_db)
    pg = resource(monkeypatch, fresh_db, settings=settings(("app.tenant", "acme", None)))
    with pg.connect("other", autocommit=True) as conn:
        assert conn.execute("SELECT current_setting('app.tenant', true)").fetchone() == (None,)


def test_a_role_not_granted_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, fresh_db: str, role: str
) -> None:
    # A non-superuser login that is not a member of the role.
    login = f"login_{uuid.uuid4().hex[:8]}"
    execute(
        fresh_db,
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(login), sql.Literal(SECRET)
        ),
    )
    try:
        uri = psycopg.conninfo.make_conninfo(fresh_db, user=login, password=SECRET)
        pg = resource(monkeypatch, uri, set_role=role)
        with pytest.raises(ConnectionConfigError) as caught:
            pg.open("warehouse")
        message = str(caught.value)
        assert f"connections.warehouse.set_role '{role}'" in message
        assert "permission denied to set role" in message
        assert f'GRANT "{role}" TO <login user>' in message
        assert SECRET not in message and not caught.value.transient
    finally:
        execute(fresh_db, sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_a_missing_role_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, fresh_db: str) -> None:
    pg = resource(monkeypatch, fresh_db, set_role="no_such_role_4711")
    with pytest.raises(ConnectionConfigError, match="set_role 'no_such_role_4711' was refused"):
        pg.open("warehouse")


def test_an_unknown_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, fresh_db: str
) -> None:
    pg = resource(monkeypatch, fresh_db, settings=settings(("statement_timout", "1s", None)))
    with pytest.raises(ConnectionConfigError) as caught:
        pg.open("warehouse")
    message = str(caught.value)
    assert (
        "connection 'warehouse': connections.warehouse.session_settings.statement_timout" in message
    )
    assert "unrecognized configuration parameter" in message
    assert "custom setting a prefix with a dot" in message


def test_a_bad_secret_value_is_never_shown(monkeypatch: pytest.MonkeyPatch, fresh_db: str) -> None:
    monkeypatch.setenv("TIMEOUT_SECRET", SECRET)
    pg = resource(
        monkeypatch, fresh_db, settings=settings(("statement_timeout", None, "TIMEOUT_SECRET"))
    )
    with pytest.raises(ConnectionConfigError) as caught:
        pg.open("warehouse")
    message = str(caught.value)
    assert "session_settings.statement_timeout was refused" in message
    assert "invalid value" in message and SECRET not in message and "***" in message


def test_a_secret_from_an_unset_variable(monkeypatch: pytest.MonkeyPatch, fresh_db: str) -> None:
    monkeypatch.delenv("NOT_SET_4711", raising=False)
    pg = resource(monkeypatch, fresh_db, settings=settings(("app.key", None, "NOT_SET_4711")))
    with pytest.raises(ConnectionConfigError, match="NOT_SET_4711, which is not set"):
        pg.open("warehouse")


def test_replication_connections_are_left_alone(
    monkeypatch: pytest.MonkeyPatch, fresh_db: str
) -> None:
    pg = resource(monkeypatch, fresh_db, set_role="no_such_role_4711")
    with pg.connect("warehouse", replication="database", autocommit=True) as conn:
        assert conn.pgconn.exec_(b"IDENTIFY_SYSTEM").ntuples == 1

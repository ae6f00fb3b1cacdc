"""`session_settings` and `set_role` of a connection, run on every session right after connect.

Order: the settings first (a setting the login user may change but the role may not, e.g.
a superuser-only one, still works), then SET ROLE, so everything after runs as the role and
row-level security policies and triggers see it (current_user) and the settings
(current_setting('app.tenant')). Values are bound parameters of set_config(name, value,
false), the function form of SET: a secret value never enters a statement's text, so not
even the server's log of a failed statement shows it.

On a session that is not in autocommit the set-up is committed at once: a SET in a
transaction the caller later rolls back would be undone with it. Replication connections
(walsender, simple query protocol only) are left alone: logical decoding reads as the login
user whatever the session's role, and row-level security does not apply to it.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql

from pgflow.config.model import SessionSetup, SessionValue
from pgflow.connections.errors import is_transient
from pgflow.connections.secrets import ConnectionConfigError, redact


def setting_value(connection_id: str, setting: SessionValue, environ: Mapping[str, str]) -> str:
    """The value to set; a secret one from its environment variable (never shown)."""
    if setting.env is None:
        return setting.value or ""
    value = environ.get(setting.env)
    if value is None:
        raise ConnectionConfigError(
            f"connection '{connection_id}': session_settings.{setting.name} reads environment "
            f"variable {setting.env}, which is not set; set it where the runs start"
        )
    return value


def apply_session(
    conn: psycopg.Connection,
    connection_id: str,
    setup: SessionSetup,
    environ: Mapping[str, str],
) -> None:
    """Run the connection's settings and SET ROLE on `conn`; ConnectionConfigError naming the
    connection, the field and the fix (never a secret value) when Postgres refuses one."""
    if not setup:
        return
    secrets: list[str] = []
    for setting in setup.settings:
        value = setting_value(connection_id, setting, environ)
        if setting.secret:
            secrets.append(value)
        try:
            conn.execute("SELECT set_config(%s, %s, false)", (setting.name, value))
        except psycopg.Error as exc:
            raise _setting_error(connection_id, setting, exc, secrets) from None
    if setup.set_role is not None:
        try:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(setup.set_role)))
        except psycopg.Error as exc:
            raise _role_error(connection_id, setup.set_role, exc, secrets) from None
    if not conn.autocommit:
        conn.commit()


def _setting_error(
    connection_id: str, setting: SessionValue, exc: psycopg.Error, secrets: list[str]
) -> ConnectionConfigError:
    message = redact(str(exc).strip(), secrets)
    field = f"connections.{connection_id}.session_settings.{setting.name}"
    if exc.sqlstate == "42704":  # undefined_object: no such setting
        fix = (
            "fix the name (SHOW ALL lists the settings), or give a custom setting a prefix "
            "with a dot, e.g. app.tenant"
        )
    elif exc.sqlstate == "42501":  # insufficient_privilege
        fix = "GRANT SET ON PARAMETER to the login user (Postgres 15+), or remove the setting"
    else:
        fix = "give it a value the setting accepts"
    return ConnectionConfigError(
        f"connection '{connection_id}': {field} was refused by Postgres: {message}; {fix}",
        transient=is_transient(exc),
    )


def _role_error(
    connection_id: str, role: str, exc: psycopg.Error, secrets: list[str]
) -> ConnectionConfigError:
    message = redact(str(exc).strip(), secrets)
    field = f"connections.{connection_id}.set_role"
    return ConnectionConfigError(
        f"connection '{connection_id}': {field} '{role}' was refused by Postgres: {message}; "
        f"the login user must be a member of the role: GRANT {sql.Identifier(role).as_string()} "
        f"TO <login user>, or fix the role's name",
        transient=is_transient(exc),
    )

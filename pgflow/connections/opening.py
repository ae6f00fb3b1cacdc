"""Resolving a connection id to its conninfo and opening it: the one set of rules that the
Dagster resource (resource.py) and the tools outside a run (`pgflow specs`) share."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgflow.config.model import SessionSetup
from pgflow.connections.errors import is_transient
from pgflow.connections.secrets import (
    ConnectionConfigError,
    VaultSettings,
    conninfo_from_env,
    conninfo_from_secret,
    read_vault_secret,
    redact,
    secret_values,
)
from pgflow.connections.session import apply_session

# Every pgflow session talks UTF8, whatever its database stores (see open_conninfo()).
CLIENT_ENCODING = "UTF8"


def resolve_conninfo(
    connection_id: str,
    connection_type: str,
    environ: Mapping[str, str],
    vault: VaultSettings | None = None,
) -> str:
    """The conninfo of a connection; it holds secrets, so never log or show it."""
    if connection_type == "env":
        return conninfo_from_env(connection_id, environ)
    if connection_type == "vault":
        settings = vault or VaultSettings.from_environ(environ)
        where = f"connection '{connection_id}' (Vault {settings.mount}/{settings.secret_path(connection_id)})"
        return conninfo_from_secret(read_vault_secret(settings, connection_id), where)
    raise ConnectionConfigError(
        f"connection '{connection_id}': connection_type '{connection_type}' is unknown; use env or vault"
    )


def open_conninfo(
    conninfo: str,
    connection_id: str,
    connection_type: str,
    defaults: Mapping[str, Any] | None = None,
    session: SessionSetup | None = None,
    environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> psycopg.Connection:
    """A new connection; `defaults` (application_name, connect_timeout...) yield to what the
    conninfo sets itself, `kwargs` do not. A failure is re-raised without any secret.
    `session` (the connection's set_role and session_settings) runs before anything else,
    on every session but a replication one (session.py says why)."""
    given = conninfo_to_dict(conninfo)
    # Text crosses between databases in the client encoding (binary COPY and pgoutput
    # included): one encoding on every session, or a LATIN1 source's bytes would reach a
    # UTF8 sink unconverted. libpq's default is each database's own encoding.
    wanted = {"client_encoding": CLIENT_ENCODING, **(defaults or {})}
    options = {k: v for k, v in wanted.items() if k not in given and k not in kwargs}
    try:
        conn = psycopg.connect(conninfo, **options, **kwargs)
    except psycopg.Error as exc:
        what = f"could not connect to '{connection_id}' ({connection_type})"
        raise connection_error(exc, conninfo, what) from None
    if session and not kwargs.get("replication"):
        try:
            apply_session(conn, connection_id, session, os.environ if environ is None else environ)
        except BaseException:
            conn.close()
            raise
    return conn


def connection_error(exc: psycopg.Error, conninfo: str, what: str) -> ConnectionConfigError:
    """`<what>: <Postgres' message>` without the conninfo's secrets; transient as `exc` is."""
    message = redact(str(exc).strip(), secret_values(conninfo))
    return ConnectionConfigError(f"{what}: {message}", transient=is_transient(exc))

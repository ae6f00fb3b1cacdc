"""The Dagster resource that opens Postgres connections by connection id.

Secrets are read when a run first needs them (never at code-location load), cached for the
life of the resource instance (one run step), and kept out of config, logs and errors:
Vault tokens come only from the environment, and connect errors are redacted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, PrivateAttr

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

# Every pgflow session talks UTF8, whatever its database stores (see open()).
CLIENT_ENCODING = "UTF8"


class PostgresConnections(dg.ConfigurableResource["PostgresConnections"]):
    """Resolves `connection_id` + `connection_type` (env | vault) to live psycopg connections."""

    vault_addr: str | None = Field(default=None, description="Defaults to $VAULT_ADDR.")
    vault_mount: str | None = Field(
        default=None, description="Defaults to $PGFLOW_VAULT_MOUNT or 'secret'."
    )
    vault_prefix: str | None = Field(
        default=None, description="Defaults to $PGFLOW_VAULT_PREFIX or 'pgflow'."
    )
    application_name: str = Field(default="pgflow", description="Shown in pg_stat_activity.")

    _cache: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    def conninfo(self, connection_id: str, connection_type: str = "env") -> str:
        """The conninfo for a connection; contains secrets, so never log or return it to users."""
        key = (connection_id, connection_type)
        if key not in self._cache:
            self._cache[key] = self._resolve(connection_id, connection_type)
        return self._cache[key]

    def _resolve(self, connection_id: str, connection_type: str) -> str:
        if connection_type == "env":
            return conninfo_from_env(connection_id, os.environ)
        if connection_type == "vault":
            settings = VaultSettings.from_environ(
                os.environ, addr=self.vault_addr, mount=self.vault_mount, prefix=self.vault_prefix
            )
            where = f"connection '{connection_id}' (Vault {settings.mount}/{settings.secret_path(connection_id)})"
            return conninfo_from_secret(read_vault_secret(settings, connection_id), where)
        raise ConnectionConfigError(
            f"connection '{connection_id}': connection_type '{connection_type}' is unknown; use env or vault"
        )

    def open(
        self, connection_id: str, connection_type: str = "env", **kwargs: Any
    ) -> psycopg.Connection:
        """A new connection the caller closes; failures are re-raised without any secret."""
        conninfo = self.conninfo(connection_id, connection_type)
        given = conninfo_to_dict(conninfo)
        # A connection's own application_name (secret key or URI parameter) beats the default.
        if "application_name" not in given:
            kwargs.setdefault("application_name", self.application_name)
        # Text crosses between databases in the client encoding (binary COPY and pgoutput
        # included): one encoding on every session, or a LATIN1 source's bytes would reach a
        # UTF8 sink unconverted. libpq's default is each database's own encoding.
        if "client_encoding" not in given:
            kwargs.setdefault("client_encoding", CLIENT_ENCODING)
        try:
            return psycopg.connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            message = redact(str(exc).strip(), secret_values(conninfo))
            raise ConnectionConfigError(
                f"could not connect to '{connection_id}' ({connection_type}): {message}",
                transient=is_transient(exc),
            ) from None

    @contextmanager
    def connect(
        self, connection_id: str, connection_type: str = "env", **kwargs: Any
    ) -> Iterator[psycopg.Connection]:
        """Open a connection for a `with` block; connect failures carry no secret."""
        with self.open(connection_id, connection_type, **kwargs) as conn:
            yield conn

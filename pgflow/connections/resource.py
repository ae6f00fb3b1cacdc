"""The Dagster resource that opens Postgres connections by connection id.

Secrets are read when a run first needs them (never at code-location load), cached for the
life of the resource instance (one run step), and kept out of config, logs and errors:
Vault tokens come only from the environment, and connect errors are redacted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from pydantic import Field, PrivateAttr

from pgflow.config.model import ConnectionSpec, SessionSetup, SessionValue
from pgflow.connections.opening import open_conninfo, resolve_conninfo
from pgflow.connections.secrets import VaultSettings


class SessionSettingConfig(dg.Config):
    """One session setting: its value, or the environment variable of a secret one (only the
    variable's name is in the resource's config, which Dagster shows)."""

    name: str
    value: str | None = None
    env: str | None = None


class ConnectionSessionConfig(dg.Config):
    """`set_role` and `session_settings` of a declared connection."""

    set_role: str | None = None
    settings: list[SessionSettingConfig] = Field(default_factory=list)

    def setup(self) -> SessionSetup:
        values = tuple(SessionValue(s.name, s.value, s.env) for s in self.settings)
        return SessionSetup(self.set_role, values)


def session_config(declared: Mapping[str, ConnectionSpec]) -> dict[str, ConnectionSessionConfig]:
    """The resource's `sessions`: each declared connection with a role or settings."""
    return {
        connection_id: ConnectionSessionConfig(
            set_role=spec.session.set_role,
            settings=[
                SessionSettingConfig(name=v.name, value=v.value, env=v.env)
                for v in spec.session.settings
            ],
        )
        for connection_id, spec in declared.items()
        if spec.session
    }


def with_sessions(
    declared: Mapping[str, ConnectionSpec], connections: PostgresConnections | None = None
) -> PostgresConnections:
    """`connections` (default settings when None: a Component's `connections:` otherwise) with
    the declared connections' `set_role` and `session_settings`, which every session opened
    for them applies: the one way pgflow's entry points build the resource."""
    sessions = session_config(declared)
    if connections is None:
        return PostgresConnections(sessions=sessions)
    if not sessions:
        return connections
    return PostgresConnections(
        **{**connections.model_dump(exclude={"sessions"}), "sessions": sessions}
    )


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
    sessions: dict[str, ConnectionSessionConfig] = Field(
        default_factory=dict,
        description="set_role and session_settings by connection id (from `connections:`), "
        "run on every session opened for it.",
    )

    _cache: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    def conninfo(self, connection_id: str, connection_type: str = "env") -> str:
        """The conninfo for a connection; contains secrets, so never log or return it to users."""
        key = (connection_id, connection_type)
        if key not in self._cache:
            self._cache[key] = self._resolve(connection_id, connection_type)
        return self._cache[key]

    def _resolve(self, connection_id: str, connection_type: str) -> str:
        vault = None
        if connection_type == "vault":
            vault = VaultSettings.from_environ(
                os.environ, addr=self.vault_addr, mount=self.vault_mount, prefix=self.vault_prefix
            )
        return resolve_conninfo(connection_id, connection_type, os.environ, vault)

    def open(
        self, connection_id: str, connection_type: str = "env", **kwargs: Any
    ) -> psycopg.Connection:
        """A new connection the caller closes; failures are re-raised without any secret.
        A connection's own application_name (secret key or URI parameter) beats the default."""
        conninfo = self.conninfo(connection_id, connection_type)
        defaults = {"application_name": self.application_name}
        declared = self.sessions.get(connection_id)
        session = declared.setup() if declared is not None else None
        return open_conninfo(
            conninfo, connection_id, connection_type, defaults, session=session, **kwargs
        )

    @contextmanager
    def connect(
        self, connection_id: str, connection_type: str = "env", **kwargs: Any
    ) -> Iterator[psycopg.Connection]:
        """Open a connection for a `with` block; connect failures carry no secret."""
        with self.open(connection_id, connection_type, **kwargs) as conn:
            yield conn

"""Turn a connection id into a libpq conninfo, from the environment or HashiCorp Vault (KV v2).

Nothing here logs, and no error message carries a secret value: messages name the connection,
the variable or Vault path, and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgflow.config.environment import env_var_for

if TYPE_CHECKING:
    import hvac

# Keys a Vault secret may hold besides `url`; everything else is refused by name.
_PART_KEYS = ("host", "port", "dbname", "user", "password")
_OPTIONAL_KEYS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "options",
    "connect_timeout",
    "target_session_attrs",
    "application_name",
    "hostaddr",
)


class ConnectionConfigError(RuntimeError):
    """A connection cannot be resolved or opened; the message is safe to show.

    `transient` is True when a retry may succeed (server down or restarting, network).
    """

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def conninfo_from_env(connection_id: str, environ: Mapping[str, str]) -> str:
    name = env_var_for(connection_id)
    value = environ.get(name)
    if not value:
        raise ConnectionConfigError(
            f"connection '{connection_id}' (connection_type env): environment variable {name} "
            f"is not set; set it to a libpq URI such as postgresql://user:***@host:5432/dbname"
        )
    _check_parses(value, f"connection '{connection_id}': {name}")
    return value


@dataclass(frozen=True)
class VaultSettings:
    addr: str
    token: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    mount: str = "secret"
    prefix: str = "pgflow"
    namespace: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: str | None) -> VaultSettings:
        def pick(key: str, env: str, default: str | None = None) -> str | None:
            return overrides.get(key) or environ.get(env) or default

        addr = pick("addr", "VAULT_ADDR")
        if not addr:
            raise ConnectionConfigError(
                "connection_type vault needs VAULT_ADDR (e.g. https://vault.example.com:8200) "
                "and VAULT_TOKEN or VAULT_ROLE_ID/VAULT_SECRET_ID"
            )
        return cls(
            addr=addr,
            token=environ.get("VAULT_TOKEN"),
            role_id=environ.get("VAULT_ROLE_ID"),
            secret_id=environ.get("VAULT_SECRET_ID"),
            mount=pick("mount", "PGFLOW_VAULT_MOUNT", "secret") or "secret",
            prefix=(pick("prefix", "PGFLOW_VAULT_PREFIX", "pgflow") or "").strip("/"),
            namespace=pick("namespace", "VAULT_NAMESPACE"),
        )

    def secret_path(self, connection_id: str) -> str:
        return f"{self.prefix}/{connection_id}" if self.prefix else connection_id


def vault_client(settings: VaultSettings) -> hvac.Client:
    """An authenticated client: a token, else an AppRole login."""
    import hvac  # imported here: only vault connections pay for it
    import requests.exceptions

    client = hvac.Client(url=settings.addr, namespace=settings.namespace)
    if settings.token:
        client.token = settings.token
    elif settings.role_id and settings.secret_id:
        try:
            client.auth.approle.login(role_id=settings.role_id, secret_id=settings.secret_id)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise ConnectionConfigError(
                f"Vault AppRole login at {settings.addr} failed ({type(exc).__name__}); "
                f"check VAULT_ROLE_ID and VAULT_SECRET_ID"
            ) from None
    else:
        raise ConnectionConfigError(
            "connection_type vault needs VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole"
        )
    return client


def read_vault_secret(settings: VaultSettings, connection_id: str) -> Mapping[str, object]:
    path = settings.secret_path(connection_id)
    where = f"connection '{connection_id}' (Vault KV v2 {settings.mount}/{path} at {settings.addr})"
    import hvac.exceptions
    import requests.exceptions

    client = vault_client(settings)
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=settings.mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        raise ConnectionConfigError(
            f"{where}: no secret there; write one with `url` or host/port/dbname/user/password"
        ) from None
    except hvac.exceptions.Forbidden:
        raise ConnectionConfigError(
            f"{where}: permission denied; give the token a policy with read on this path"
        ) from None
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
        raise ConnectionConfigError(
            f"{where}: Vault request failed ({type(exc).__name__})"
        ) from None
    secret: Mapping[str, object] = response["data"]["data"]  # hvac is untyped: KV v2's shape
    return secret


def conninfo_from_secret(secret: Mapping[str, object], where: str) -> str:
    """A conninfo from a secret holding `url`, or host/port/dbname/user/password."""
    unknown = sorted(set(secret) - {"url", *_PART_KEYS, *_OPTIONAL_KEYS})
    if unknown:
        allowed = ", ".join(("url", *_PART_KEYS, *_OPTIONAL_KEYS))
        raise ConnectionConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    if "url" in secret:
        url = str(secret["url"])
        _check_parses(url, f"{where}: key url")
        # Other keys (e.g. a password kept out of the URL) complete or override it, never vanish.
        extra = {k: str(v) for k, v in secret.items() if k != "url" and v is not None}
        return make_conninfo(url, **extra) if extra else url
    missing = [k for k in ("host", "dbname", "user") if not secret.get(k)]
    if missing:
        raise ConnectionConfigError(
            f"{where}: missing {', '.join(missing)}; store `url`, or host, port, dbname, user, password"
        )
    return make_conninfo(**{k: str(v) for k, v in secret.items() if v is not None})


def _check_parses(conninfo: str, where: str) -> None:
    try:
        conninfo_to_dict(conninfo)
    except Exception:
        # libpq's message quotes the string it failed on, password included: never pass it on.
        raise ConnectionConfigError(
            f"{where} is not a valid libpq URI or key=value string "
            f"(e.g. postgresql://user:***@host:5432/dbname)"
        ) from None


def secret_values(conninfo: str) -> list[str]:
    """Values of a conninfo that must never be shown (the password, any sslpassword)."""
    try:
        params = conninfo_to_dict(conninfo)
    except Exception:
        return [conninfo]
    return [str(params[k]) for k in ("password", "sslpassword") if params.get(k)]


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    # Belt and braces: a URI password we were not told about.
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)

"""`set_role` and `session_settings` of a declared connection: what every session pgflow
opens for it runs right after connecting (pgflow/connections/session.py applies them).

A value is either written in the spec (shown in errors like any spec value) or, when it is a
secret, `{env: NAME}`: read from that environment variable when the session opens, like the
connection's own PGFLOW_CONN_* URI, and never logged or shown. A secret written in the spec
itself (`{value: ..., secret: true}`) is refused: specs are files in a repository.
"""

from __future__ import annotations

import re

from pgflow.config.model import SessionSetup, SessionValue
from pgflow.config.reader import Section

# A Postgres setting name: `work_mem`, or a custom placeholder such as `app.tenant`.
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Settings that would change who the session is: set_role says it, and checks the grant.
_IDENTITY_SETTINGS = {"role", "session_authorization"}
MAX_NAME = 63  # NAMEDATALEN - 1: longer role and setting names are truncated by Postgres


def read_session(entry: Section) -> SessionSetup:
    """`set_role` and `session_settings` of one `connections:` entry."""
    role = entry.text("set_role")
    if role is not None and not _valid_role(role):
        entry.problem(
            "set_role", f"must be a role name of 1 to {MAX_NAME} characters, got {role!r}"
        )
        role = None
    settings = _read_settings(entry)
    return SessionSetup(role, settings)


def _valid_role(role: str) -> bool:
    return 0 < len(role.encode()) <= MAX_NAME and "\x00" not in role


def _read_settings(entry: Section) -> tuple[SessionValue, ...]:
    raw = entry.raw("session_settings")
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        entry.problem(
            "session_settings",
            f"must be a mapping of setting names to values (e.g. {{app.tenant: acme}}), "
            f"got {type(raw).__name__}",
        )
        return ()
    values = []
    for name, value in raw.items():
        field = f"session_settings.{name}"
        problem = _name_problem(str(name))
        if problem:
            entry.problem(field, problem)
            continue
        read = _read_value(str(name), value, entry, field)
        if read is not None:
            values.append(read)
    return tuple(values)


def _name_problem(name: str) -> str | None:
    if name.lower() in _IDENTITY_SETTINGS:
        return f"'{name}' cannot be a session setting; use set_role: <role> on the connection"
    if not _SETTING_NAME.fullmatch(name) or len(name) > MAX_NAME:
        return (
            f"'{name}' is not a setting name: write a Postgres setting (e.g. statement_timeout) "
            f"or a custom one with a dot (e.g. app.tenant)"
        )
    return None


def _read_value(name: str, value: object, entry: Section, field: str) -> SessionValue | None:
    if isinstance(value, bool):
        return SessionValue(name, "on" if value else "off")
    if isinstance(value, str | int | float):
        return SessionValue(name, str(value))
    if isinstance(value, dict):
        return _read_secret(name, value, entry, field)
    entry.problem(
        field,
        f"must be a string, number, true/false or {{env: NAME}}, got {type(value).__name__}",
    )
    return None


def _read_secret(
    name: str, value: dict[object, object], entry: Section, field: str
) -> SessionValue | None:
    keys = set(value)
    if "value" in keys or "secret" in keys:
        entry.problem(
            field,
            "a secret value cannot be written in a spec file: put it in an environment "
            "variable and write {env: NAME} (read when the session opens, never shown)",
        )
        return None
    env = value.get("env")
    if keys != {"env"} or not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
        entry.problem(
            field,
            "must be a plain value or {env: NAME} naming the environment variable that holds "
            f"a secret value, got {sorted(map(str, keys))}",
        )
        return None
    return SessionValue(name, env=env)

"""An error as one short line without secrets: what `pgflow/last_error` and `pgflow report`
show (no Dagster import: `pgflow report` imports it only when an instance is used)."""

from __future__ import annotations

import re
from typing import Protocol

from pgflow.connections.secrets import redact

# The seeds' `last_error` is a short text: the class and the first ~500 characters.
ERROR_CHARS = 500
_KEY_VALUE_PASSWORD = re.compile(r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)
_QUALIFIED_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*): ")
_WRAPPERS = ("RetryRequested", "DagsterExecution", "DagsterUserCodeExecutionError")


class ErrorInfo(Protocol):
    """What Dagster records of an error (its SerializableErrorInfo)."""

    @property
    def message(self) -> str: ...
    @property
    def cls_name(self) -> str | None: ...
    @property
    def cause(self) -> ErrorInfo | None: ...


def error_text(error: ErrorInfo, limit: int = ERROR_CHARS) -> str:
    """`Class: message`, on one line, without a password, at most `limit` characters."""
    # Dagster wraps the step's own error (a retry request, a step or IO manager error): skip.
    while error.cause is not None and (error.cls_name or "").startswith(_WRAPPERS):
        error = error.cause
    message = _QUALIFIED_PREFIX.sub("", error.message.strip())
    name = error.cls_name or ""
    text = message if not name or message.startswith(f"{name}:") else f"{name}: {message}"
    return one_line(text, limit)


def exception_line(error: BaseException, limit: int = ERROR_CHARS) -> str:
    """`Class: message` of a raised error, on one line, without a password."""
    return one_line(f"{type(error).__name__}: {error}", limit)


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """`text` on one line, without a password, at most `limit` characters."""
    return cut(without_passwords(" ".join(text.split())), limit)


def without_passwords(text: str) -> str:
    """`text` without a connection URI's password or a key=value conninfo's password."""
    return _KEY_VALUE_PASSWORD.sub(r"\1***", redact(text, []))


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

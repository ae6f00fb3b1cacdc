"""The cluster's own files: the private state file (user, password, port) and the server log."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pgflow.localdb.errors import LocalDbError
from pgflow.localdb.server_user import as_root, chown_to_server_user

LOG_TAIL_LINES = 30


def write_private(path: Path, text: str, server_owned: bool = False) -> None:
    """Atomically write ``text`` readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if server_owned and as_root():
        chown_to_server_user(tmp)
    os.replace(tmp, path)


def load_state(state_file: Path, data_dir: Path) -> dict[str, object]:
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError as exc:
        raise LocalDbError(
            f"{state_file} is missing, so the password of the cluster in "
            f"{data_dir} is unknown: destroy the folder and start again"
        ) from exc
    if not isinstance(state, dict) or "password" not in state or "user" not in state:
        raise LocalDbError(f"{state_file} is not a valid cluster state file")
    return state


def save_state(state_file: Path, state: dict[str, object]) -> None:
    write_private(state_file, json.dumps(state, indent=2) + "\n")


def ensure_log_file(log_file: Path) -> None:
    log_file.touch(exist_ok=True)
    if as_root():
        chown_to_server_user(log_file)  # pg_ctl appends to it as the server user


def log_since(log_file: Path, offset: int = 0) -> str:
    """The last lines the server logged after ``offset`` (the whole log's tail by default)."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:]) or "(log is empty)"

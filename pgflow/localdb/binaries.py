"""Finding the PostgreSQL server binaries (initdb, pg_ctl, postgres)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from pgflow.localdb.errors import LocalDbError

BINDIR_ENV = "PGFLOW_PG_BINDIR"
INSTALL_HINT = (
    "PostgreSQL server binaries not found: install them with "
    "`apt-get install -y postgresql-15` (Debian/Ubuntu) or set PGFLOW_PG_BINDIR"
)


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: $PGFLOW_PG_BINDIR, pg_config, then a scan."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        if _has_server_binaries(Path(override)):
            return Path(override)
        raise LocalDbError(f"{BINDIR_ENV}={override} does not contain initdb and pg_ctl")
    for candidate in _bindir_candidates():
        if _has_server_binaries(candidate):
            return candidate
    raise LocalDbError(INSTALL_HINT)


def _bindir_candidates() -> Iterator[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            yield Path(result.stdout.strip())
    # Debian installs the server outside PATH; prefer the newest major version.
    scanned = glob.glob("/usr/lib/postgresql/*/bin")
    for found in sorted(scanned, key=_major_version, reverse=True):
        yield Path(found)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        yield Path(pg_ctl).parent


def _major_version(bindir: str) -> int:
    name = Path(bindir).parent.name
    return int(name) if name.isdigit() else -1


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres"))

"""Running the server as OS user postgres when pgflow runs as root (Postgres refuses root)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from pgflow.localdb.errors import LocalDbError

SERVER_OS_USER = "postgres"
# As root, where the server's files go when OS user postgres cannot reach the state folder.
SERVER_HOME_PARENT = Path("/var/tmp/pgflow-localdb")


def as_root() -> bool:
    return os.geteuid() == 0


def followed(path: Path) -> Path:
    return Path(os.readlink(path)) if path.is_symlink() else path


def server_user_can_enter(folder: Path) -> bool:
    # Every parent folder must be traversable by the server user (not so under /root).
    probe = subprocess.run([*server_user_prefix(), "test", "-x", str(folder)], cwd="/")
    return probe.returncode == 0


def stand_in_home(root: Path) -> Path:
    """A root-owned folder under SERVER_HOME_PARENT, one per state folder (named by its hash)."""
    SERVER_HOME_PARENT.mkdir(mode=0o755, parents=True, exist_ok=True)
    parent = SERVER_HOME_PARENT.lstat()
    # /var/tmp is writable by everyone: refuse a parent that another user made or swapped.
    if SERVER_HOME_PARENT.is_symlink() or parent.st_uid != 0 or parent.st_mode & 0o022:
        raise LocalDbError(
            f"{SERVER_HOME_PARENT} is not a folder owned by root and writable only by it: "
            "remove it, or choose a state folder that OS user postgres can reach"
        )
    home = SERVER_HOME_PARENT / hashlib.sha256(str(root).encode()).hexdigest()[:16]
    home.mkdir(mode=0o755, exist_ok=True)
    os.chmod(home, 0o755)
    return home


def clear_orphaned_data(data_dir: Path) -> None:
    # Left by an earlier state folder at the same path that was deleted without `destroy`.
    if (data_dir / "postmaster.pid").exists():
        raise LocalDbError(
            f"a server of an earlier state folder at this path still runs from {data_dir}: "
            f"stop it (runuser -u {SERVER_OS_USER} -- pg_ctl stop -D {data_dir}) and start again"
        )
    shutil.rmtree(data_dir, ignore_errors=True)


def server_user_prefix() -> list[str]:
    if not as_root():
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise LocalDbError("running as root needs `runuser` (util-linux) to start PostgreSQL")
    return [runuser, "-u", SERVER_OS_USER, "--"]


def chown_to_server_user(path: Path) -> None:
    try:
        account = pwd.getpwnam(SERVER_OS_USER)
    except KeyError as exc:
        raise LocalDbError(
            f"PostgreSQL refuses to run as root and there is no OS user {SERVER_OS_USER!r}: "
            "create it (useradd --system postgres) or run as an unprivileged user"
        ) from exc
    os.chown(path, account.pw_uid, account.pw_gid)

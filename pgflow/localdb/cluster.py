"""A throw-away local PostgreSQL cluster for development and tests.

The cluster lives in one state folder (``root``)::

    root/data           the data directory (initdb)
    root/postgres.log   the server log
    root/cluster.json   user, password and last port (mode 0600: it holds the password)

As root the server runs as OS user ``postgres``. When that user cannot reach ``root`` (a
clone under /root or a ``mktemp -d`` folder), the data directory and the log live in
``/var/tmp/pgflow-localdb/<hash of root>/`` instead, and ``root/data`` and
``root/postgres.log`` are symbolic links to them, so the layout above still holds.

It listens on 127.0.0.1 only, on a free TCP port, with no unix socket, password (SCRAM)
authentication and ``wal_level=logical`` so logical replication can be exercised locally.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from pgflow.localdb.binaries import find_bindir
from pgflow.localdb.errors import LocalDbError
from pgflow.localdb.network import HOST, PortTaken, pick_free_port, port_is_free, server_options
from pgflow.localdb.server_user import (
    SERVER_OS_USER,
    as_root,
    chown_to_server_user,
    clear_orphaned_data,
    followed,
    server_user_can_enter,
    server_user_prefix,
    stand_in_home,
)
from pgflow.localdb.state import ensure_log_file, load_state, log_since, save_state, write_private

SUPERUSER = "postgres"
START_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 5
START_ATTEMPTS = 3


@dataclass(frozen=True)
class ClusterInfo:
    host: str
    port: int
    user: str
    password: str = field(repr=False)  # kept out of repr so it does not end up in logs

    def uri(self, dbname: str) -> str:
        """A libpq URI for ``dbname`` (user, password and database percent-encoded)."""
        user = quote(self.user, safe="")
        password = quote(self.password, safe="")
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{quote(dbname, safe='')}"


class LocalPostgres:
    """Create, start, stop and destroy a local cluster kept in the state folder ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.state_file = self.root / "cluster.json"
        self._lock_file = self.root / ".lock"
        self._bindir: Path | None = None  # looked up on first use (pg_config is a subprocess)

    @property
    def data_dir(self) -> Path:
        """The data directory, behind ``root/data`` when that is a link (see the docstring)."""
        return followed(self.root / "data")

    @property
    def log_file(self) -> Path:
        return followed(self.root / "postgres.log")

    @property
    def server_home(self) -> Path:
        """The folder holding the data directory and the log: ``root`` or its stand-in."""
        return self.data_dir.parent

    # -- public API ------------------------------------------------------------------------

    def start(self, databases: Sequence[str] = ()) -> ClusterInfo:
        """Initialise and start the cluster if needed, then create the missing ``databases``."""
        with self._locked():
            if not self._initialized():
                self._init_cluster()
            if self._server_running():
                info = self._running_info()
                self._wait_connectable(info)
            else:
                info = self._start_server()
        for name in databases:
            self._create_database(info, name)
        return info

    def stop(self) -> None:
        """Stop the server (fast shutdown); nothing to do when it is not running."""
        if not self.data_dir.is_dir():
            return
        with self._locked():
            self._stop_server()

    def status(self) -> ClusterInfo | None:
        """The connection info when the server runs and accepts our credentials, else None."""
        if not self._initialized() or not self._server_running():
            return None
        try:
            info = self._running_info()
            with self._connect(info):
                return info
        except (LocalDbError, psycopg.Error):
            return None

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists (the server must be running)."""
        info = self.status()
        if info is None:
            raise LocalDbError(f"local PostgreSQL in {self.root} is not running")
        self._create_database(info, name)

    def run_tool(self, exe: str, *args: str) -> str:
        """Run server binary ``exe`` (e.g. pg_resetwal) as the server's OS user; its stdout.

        For maintenance on a stopped cluster; raises LocalDbError when it fails.
        """
        return self._run_pg(exe, *args).stdout

    def destroy(self) -> None:
        """Stop the server and delete the whole state folder."""
        if not self.root.exists():
            return
        with self._locked():
            if self.data_dir.is_dir():
                self._stop_server()
            if self.server_home != self.root:
                shutil.rmtree(self.server_home, ignore_errors=True)
            shutil.rmtree(self.root)

    # -- initialisation ----------------------------------------------------------------------

    def _initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _init_cluster(self) -> None:
        # A data folder without PG_VERSION is a failed initdb: start over.
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self._place_server_home()
        self._prepare_dir(self.data_dir, mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.server_home / ".pwfile"
        try:
            # initdb reads the password file as the server user.
            write_private(pwfile, password + "\n", server_owned=True)
            self._run_pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                what="initdb",
            )
        except LocalDbError:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        save_state(self.state_file, {"user": SUPERUSER, "password": password, "port": None})

    def _place_server_home(self) -> None:
        """As root, move the server's files out of a state folder OS user postgres cannot reach."""
        if not as_root():
            return
        os.chmod(self.root, 0o755)  # root keeps the state folder; the server user owns data/
        if server_user_can_enter(self.root):
            return
        home = stand_in_home(self.root)
        clear_orphaned_data(home / "data")
        for name in ("data", "postgres.log"):
            link = self.root / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(home / name)

    def _prepare_dir(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
        if as_root():
            chown_to_server_user(path)
            self._check_server_user_access(path)

    def _check_server_user_access(self, path: Path) -> None:
        # Every parent folder must be traversable by the server user (e.g. not under /root).
        probe = subprocess.run([*server_user_prefix(), "test", "-w", str(path)])
        if probe.returncode != 0:
            raise LocalDbError(
                f"OS user {SERVER_OS_USER!r} cannot write to {path}: make its parent folders "
                "traversable (chmod o+x) or choose a state folder elsewhere (e.g. under /tmp)"
            )

    # -- server process ----------------------------------------------------------------------

    def _server_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").is_file():
            return False
        result = self._run_pg("pg_ctl", "status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    def _start_server(self) -> ClusterInfo:
        state = load_state(self.state_file, self.data_dir)
        port = state.get("port")
        if not isinstance(port, int) or not port_is_free(port):
            port = pick_free_port()
        for _ in range(START_ATTEMPTS - 1):
            try:
                return self._start_on_port(state, port)
            except PortTaken:
                # Another process grabbed the port between our probe and the server's bind.
                port = pick_free_port()
        return self._start_on_port(state, port)

    def _start_on_port(self, state: dict[str, object], port: int) -> ClusterInfo:
        save_state(self.state_file, {**state, "port": port})
        ensure_log_file(self.log_file)
        log_offset = self.log_file.stat().st_size
        result = self._run_pg(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            server_options(port),
            check=False,
        )
        if result.returncode != 0:
            log = log_since(self.log_file, log_offset)
            if "Address already in use" in log:
                raise PortTaken(port)
            raise LocalDbError(
                f"PostgreSQL failed to start (pg_ctl exit {result.returncode}) in {self.data_dir}"
                f"\n{_output(result)}\n--- tail of {self.log_file} ---\n{log}"
            )
        info = self._info(state, port)
        self._wait_connectable(info)
        return info

    def _stop_server(self) -> None:
        if not self._server_running():
            return
        result = self._run_pg(
            "pg_ctl",
            "stop",
            "-w",
            "-m",
            "fast",
            "-t",
            str(START_TIMEOUT_S),
            "-D",
            str(self.data_dir),
            check=False,
        )
        if result.returncode != 0 and self._server_running():
            raise LocalDbError(f"pg_ctl stop failed in {self.data_dir}\n{_output(result)}")

    def _wait_connectable(self, info: ClusterInfo) -> None:
        # pg_ctl -w returns once the postmaster is ready; this also proves the credentials.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with self._connect(info):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise LocalDbError(
                        f"PostgreSQL in {self.data_dir} runs on port {info.port} but refuses "
                        f"connections: {exc}\n--- tail of {self.log_file} ---\n{log_since(self.log_file)}"
                    ) from exc
                time.sleep(0.2)

    # -- databases ---------------------------------------------------------------------------

    def _connect(self, info: ClusterInfo, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(info.uri(dbname), connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)

    def _create_database(self, info: ClusterInfo, name: str) -> None:
        with self._connect(info) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if exists:
                return
            # A concurrent creator may win the race: that still satisfies "exists".
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    # -- state and helpers ------------------------------------------------------------------

    def _running_info(self) -> ClusterInfo:
        return self._info(load_state(self.state_file, self.data_dir), self._pid_file_port())

    def _info(self, state: dict[str, object], port: int) -> ClusterInfo:
        return ClusterInfo(HOST, port, str(state["user"]), str(state["password"]))

    def _pid_file_port(self) -> int:
        # postmaster.pid line 4 is the port the running server actually listens on.
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        try:
            return int(lines[3])
        except (IndexError, ValueError) as exc:
            raise LocalDbError(f"unreadable {self.data_dir / 'postmaster.pid'}") from exc

    def _run_pg(
        self, exe: str, *args: str, what: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if self._bindir is None:
            self._bindir = find_bindir()
        command = [*server_user_prefix(), str(self._bindir / exe), *args]
        # cwd: the server user may not be allowed into the caller's working directory.
        cwd = self.server_home if self.server_home.is_dir() else self.root
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise LocalDbError(
                f"{what or exe} failed (exit {result.returncode})\n{_output(result)}"
            )
        return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Serialise start/stop/destroy of one folder across processes (CLI, tests, workers).
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())

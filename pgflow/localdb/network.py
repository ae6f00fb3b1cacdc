"""Where the local server listens: 127.0.0.1 only, on a free TCP port, no unix socket."""

from __future__ import annotations

import shlex
import socket

from pgflow.localdb.errors import LocalDbError

HOST = "127.0.0.1"
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",  # TCP only: no socket file to place or clean up
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
}


def pick_free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1 (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether the server could listen on ``port`` now (another listener would block it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the server, ignore TIME_WAIT leftovers of earlier connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


class PortTaken(LocalDbError):
    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is already in use")
        self.port = port


def server_options(port: int) -> str:
    # pg_ctl hands -o to /bin/sh, so every value is shell-quoted ('' for the empty socket list).
    settings = {**SERVER_SETTINGS, "port": str(port)}
    return " ".join(f"-c {shlex.quote(f'{name}={value}')}" for name, value in settings.items())

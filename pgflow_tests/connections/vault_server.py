"""A tiny in-process stand-in for HashiCorp Vault's HTTP API, for tests with the real `hvac`.

No Vault server can be installed where these tests run, so `FakeVault` serves just enough of
Vault's HTTP API, with Vault's own response shapes and status codes, for `hvac` to talk to it
unmodified:

- KV v2 read   `GET /v1/<mount>/data/<path>` (token in `X-Vault-Token`): 200 with the secret
  and its metadata; 404 `{"errors": []}` when nothing was written there; 404 with the metadata
  of a soft-deleted version; 403 `{"errors": ["permission denied"]}` for a missing or unknown
  token or a path the token may not read; 404 "no handler for route" for an unknown mount.
- KV v2 write  `POST|PUT /v1/<mount>/data/<path>` with `{"data": {...}}` (same access checks),
  and soft delete `DELETE /v1/<mount>/data/<path>` (204).
- AppRole login `POST /v1/auth/approle/login` with `{"role_id", "secret_id"}`: 200 with an
  `auth` block carrying the client token, or 400 `{"errors": ["invalid role or secret ID"]}`.

Every request is recorded (method, path, headers, body) in `FakeVault.requests`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

PERMISSION_DENIED = "permission denied"
INVALID_APPROLE = "invalid role or secret ID"
UNSUPPORTED = "1 error occurred:\n\t* unsupported operation\n\n"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string, still percent-encoded as sent
    query: str
    headers: dict[str, str]  # header names lower-cased
    body: Any  # decoded JSON, or None

    @property
    def token(self) -> str | None:
        return self.headers.get("x-vault-token")


@dataclass
class _Version:
    data: dict[str, Any] | None
    created_time: str
    deletion_time: str = ""


@dataclass
class _Secret:
    versions: list[_Version] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        latest = self.versions[-1]
        return {
            "created_time": latest.created_time,
            "custom_metadata": None,
            "deletion_time": latest.deletion_time,
            "destroyed": False,
            "version": len(self.versions),
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeVault:
    """A threaded HTTP server on 127.0.0.1 (random port) speaking a slice of Vault's API.

    Use as a context manager; `url` is the VAULT_ADDR. Tokens must be registered with
    `add_token` (optionally limited to path prefixes such as "secret/data/pgflow/") and AppRole
    credentials with `add_approle`; secrets are seeded with `put_secret`.
    """

    def __init__(self, mounts: Iterable[str] = ("secret",)) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], _Secret] = {}
        # Like `vault server -dev`, a KV v2 engine is mounted at secret/ unless told otherwise.
        self._mounts: set[str] = {m.strip("/") for m in mounts}
        self._tokens: dict[str, tuple[str, ...]] = {}
        self._approles: dict[str, tuple[str, str]] = {}
        self._requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeVault:
        handler = type("_BoundHandler", (_Handler,), {"vault": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeVault:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeVault is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- seeding ---------------------------------------------------------------------------
    def add_mount(self, mount: str) -> None:
        with self._lock:
            self._mounts.add(mount.strip("/"))

    def put_secret(self, mount: str, path: str, data: Mapping[str, Any]) -> int:
        """Write a new version of a KV v2 secret (creating the mount); returns the version."""
        mount, path = mount.strip("/"), path.strip("/")
        with self._lock:
            self._mounts.add(mount)
            secret = self._secrets.setdefault((mount, path), _Secret())
            secret.versions.append(_Version(dict(data), _now()))
            return len(secret.versions)

    def delete_secret(self, mount: str, path: str) -> None:
        """Soft-delete the latest version, as `vault kv delete` does."""
        with self._lock:
            latest = self._secrets[(mount.strip("/"), path.strip("/"))].versions[-1]
            latest.deletion_time = _now()

    def add_token(self, token: str, allowed_prefixes: Iterable[str] = ("",)) -> None:
        """Register a token; it may read/write API paths (e.g. "secret/data/pgflow/x")
        starting with one of `allowed_prefixes` (the default "" allows everything)."""
        with self._lock:
            self._tokens[token] = tuple(allowed_prefixes)

    def add_approle(
        self,
        role_id: str,
        secret_id: str,
        token: str,
        allowed_prefixes: Iterable[str] | None = None,
    ) -> None:
        """Register AppRole credentials whose login yields `token` (registered if new)."""
        with self._lock:
            self._approles[role_id] = (secret_id, token)
            if allowed_prefixes is not None or token not in self._tokens:
                self._tokens[token] = tuple(allowed_prefixes or ("",))

    # --- inspection ------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def reads(self, mount: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """The KV v2 reads recorded so far, optionally for one mount/path."""
        found = []
        for request in self.requests:
            parsed = _split_kv(unquote(request.path).removeprefix("/v1/"))
            if request.method != "GET" or parsed is None:
                continue
            if (mount is None or parsed[0] == mount) and (path is None or parsed[1] == path):
                found.append(request)
        return found

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- request handling (called from server threads) -------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _allowed(self, token: str | None, api_path: str) -> bool:
        with self._lock:
            prefixes = self._tokens.get(token or "")
        return prefixes is not None and any(api_path.startswith(p) for p in prefixes)

    def _handle(self, method: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
        if not path.startswith("/v1/"):
            return HTTPStatus.NOT_FOUND, {"errors": []}
        api_path = path.removeprefix("/v1/")
        if api_path == "auth/approle/login":
            if method not in ("POST", "PUT"):
                return HTTPStatus.METHOD_NOT_ALLOWED, {"errors": [UNSUPPORTED]}
            return self._approle_login(body)
        if not self._allowed(token, api_path):
            return HTTPStatus.FORBIDDEN, {"errors": [PERMISSION_DENIED]}
        parsed = _split_kv(api_path)
        with self._lock:
            known_mount = parsed is not None and parsed[0] in self._mounts
        if parsed is None or not known_mount:
            message = f'no handler for route "{api_path}". route entry not found.'
            return HTTPStatus.NOT_FOUND, {"errors": [message]}
        mount, secret_path = parsed
        if method == "GET":
            return self._kv_read(mount, secret_path)
        if method in ("POST", "PUT"):
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                return HTTPStatus.BAD_REQUEST, {"errors": ["no data provided"]}
            self.put_secret(mount, secret_path, body["data"])
            with self._lock:
                metadata = self._secrets[(mount, secret_path)].metadata()
            return HTTPStatus.OK, _envelope(metadata)
        if method == "DELETE":
            with self._lock:
                exists = (mount, secret_path) in self._secrets
            if exists:
                self.delete_secret(mount, secret_path)
            return HTTPStatus.NO_CONTENT, None
        return HTTPStatus.METHOD_NOT_ALLOWED, {"errors": [UNSUPPORTED]}

    def _kv_read(self, mount: str, path: str) -> tuple[int, Any]:
        with self._lock:
            secret = self._secrets.get((mount, path))
            if secret is None:
                return HTTPStatus.NOT_FOUND, {"errors": []}
            latest = secret.versions[-1]
            metadata = secret.metadata()
            data = None if latest.deletion_time else dict(latest.data or {})
        body = _envelope({"data": data, "metadata": metadata})
        # Vault answers a read of a soft-deleted version with 404 and the metadata.
        status = HTTPStatus.NOT_FOUND if data is None else HTTPStatus.OK
        return status, body

    def _approle_login(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("role_id"):
            return HTTPStatus.BAD_REQUEST, {"errors": ["missing role_id"]}
        with self._lock:
            entry = self._approles.get(str(body["role_id"]))
        if entry is None or entry[0] != body.get("secret_id"):
            return HTTPStatus.BAD_REQUEST, {"errors": [INVALID_APPROLE]}
        token = entry[1]
        auth = {
            "client_token": token,
            "accessor": uuid.uuid4().hex[:24],
            "policies": ["default", "pgflow"],
            "token_policies": ["default", "pgflow"],
            "metadata": {"role_name": "pgflow"},
            "lease_duration": 3600,
            "renewable": True,
            "entity_id": str(uuid.uuid4()),
            "token_type": "service",
            "orphan": True,
            "mfa_requirement": None,
            "num_uses": 0,
        }
        return HTTPStatus.OK, _envelope(None, auth=auth)


def _split_kv(api_path: str) -> tuple[str, str] | None:
    """("secret", "pgflow/x") for "secret/data/pgflow/x"; None for anything else."""
    mount, sep, path = api_path.partition("/data/")
    if not sep or not mount or not path:
        return None
    return mount, path.strip("/")


def _envelope(data: Any, auth: Any = None) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
        "mount_type": "kv" if auth is None else "",
    }


class _Handler(BaseHTTPRequestHandler):
    vault: FakeVault
    server_version = "FakeVault"
    sys_version = ""

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body, parsed = None, False
        else:
            parsed = True
        self.vault._record(RecordedRequest(self.command, split.path, split.query, headers, body))
        if parsed:
            status, payload = self.vault._handle(
                self.command, unquote(split.path), body, headers.get("x-vault-token")
            )
        else:
            status, payload = HTTPStatus.BAD_REQUEST, {"errors": ["failed to parse JSON input"]}
        encoded = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass

"""A real S3 protocol server for the tests: moto's server mode on 127.0.0.1, no internet.

`S3Server` runs `python -m moto.server` as a child process on a free port; `bucket()` creates
a bucket and returns an `S3Bucket`: the URI prefix, delta-rs storage options and the same
settings as the `PGFLOW_DELTA_*` environment a deployment sets (README "Delta on object
storage"). `FaultProxy` sits between delta-rs and the server and cuts connections on
request, to test network errors mid-write.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal, NamedTuple, cast

from pgflow.connections.delta_writes import PREFIX

ACCESS_KEY = "pgflow-test-key"
# Never printed by pgflow: tests assert this string is absent from errors and logs.
SECRET_KEY = "pgflow-test-SECRET-4f1c9a"
REGION = "us-east-1"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Bucket:
    """One bucket on the test server, and how a deployment would reach it."""

    name: str
    endpoint: str

    @property
    def uri_prefix(self) -> str:
        return f"s3://{self.name}"

    def uri(self, key: str) -> str:
        return f"{self.uri_prefix}/{key}"

    def storage_options(self, endpoint: str | None = None) -> dict[str, str]:
        """delta-rs options; `endpoint` overrides the server's (e.g. a FaultProxy's)."""
        return {
            "aws_endpoint_url": endpoint or self.endpoint,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "aws_region": REGION,
            "aws_allow_http": "true",  # the test server speaks plain HTTP on 127.0.0.1
        }

    def put_object(self, key: str, body: bytes) -> None:
        url = f"{self.endpoint}/{self.name}/{urllib.parse.quote(key)}"
        # Not urllib's default form content type: the server would parse the body as a form.
        headers = {"Content-Type": "application/octet-stream"}
        request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
        urllib.request.urlopen(request, timeout=10).close()  # moto does not check signatures

    def keys(self, prefix: str = "") -> list[str]:
        """The bucket's keys under `prefix`, sorted (one page: tests keep buckets small)."""
        query = urllib.parse.urlencode({"list-type": "2", "prefix": prefix})
        with urllib.request.urlopen(f"{self.endpoint}/{self.name}?{query}", timeout=10) as page:
            return sorted(re.findall(r"<Key>([^<]*)</Key>", page.read().decode()))

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The same options as PGFLOW_DELTA_* variables (DeltaStorage reads these)."""
        options = self.storage_options(endpoint)
        return {f"{PREFIX}{key.upper()}": value for key, value in options.items()}


class S3Delta(NamedTuple):
    """What the `s3_delta` fixture gives: where tables go and how to reach them."""

    uri_prefix: str  # s3://<bucket>
    storage_options: dict[str, str]  # delta-rs / polars storage_options
    env: dict[str, str]  # the same as PGFLOW_DELTA_* variables
    bucket: S3Bucket

    def uri(self, key: str) -> str:
        return f"{self.uri_prefix}/{key}"

    def bucket_keys(self, prefix: str = "") -> list[str]:
        return self.bucket.keys(prefix)


def _die_with_parent() -> None:
    """In the server's process: get SIGTERM when the test process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class S3Server:
    """moto in server mode, a child process; `stop()` kills it (also at interpreter exit)."""

    def __init__(self, *, check_credentials: bool = False) -> None:
        # check_credentials: moto checks every request's key against its IAM users (none
        # exist), so every request is refused as a real endpoint refuses bad credentials.
        self.check_credentials = check_credentials
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> S3Server:
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "MOTO_CALL_RESET_API": "false"}
        if self.check_credentials:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)  # a session that dies early still kills its server
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} in {timeout} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def bucket_unchecked(self, name: str) -> S3Bucket:
        """A bucket's settings without creating it (a server that refuses every request)."""
        return S3Bucket(name, self.endpoint)

    def bucket(self, name: str | None = None) -> S3Bucket:
        """A new, empty bucket (S3 names: lower case, digits, hyphens)."""
        bucket = S3Bucket(name or f"pgflow-{uuid.uuid4().hex[:16]}", self.endpoint)
        request = urllib.request.Request(f"{self.endpoint}/{bucket.name}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()  # moto does not check signatures
        return bucket


CutMode = Literal["drop_request", "drop_response"]


class FaultProxy:
    """A TCP proxy in front of the server that cuts the connection of a matching request.

    It runs in a child process: delta-rs holds the GIL during some calls, so a proxy thread
    in the test's process would deadlock with it. `arm(pattern, mode, times)`: the next
    `times` requests whose head (request line and headers) matches `pattern` are cut:
    drop_request closes before the server sees it (a failed upload), drop_response lets the
    server act and closes before the answer (the client cannot know whether it landed).
    `requests()` gives every request head seen, `cuts()` how many were cut.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._control: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self._process = context.Process(
            target=_proxy_main, args=(self.upstream_port, self.port, child), daemon=True
        )
        self._process.start()
        self._call("ping")
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.join(5)
            if process.is_alive():
                process.kill()

    def arm(self, pattern: bytes, mode: CutMode, times: int = 1) -> None:
        self._call("arm", pattern, mode, times)

    def requests(self) -> list[bytes]:
        return list(self._call("requests"))

    def cuts(self) -> int:
        return int(self._call("cuts"))

    def _call(self, *command: object) -> Any:
        assert self._control is not None, "start() the proxy first"
        self._control.send(command)
        if not self._control.poll(30):
            raise RuntimeError("the fault proxy did not answer")
        return self._control.recv()


def _proxy_main(upstream_port: int, port: int, control: Connection) -> None:
    proxy = _Proxy(upstream_port, socket.create_server(("127.0.0.1", port)))
    threading.Thread(target=proxy.accept, daemon=True).start()
    while True:
        try:
            command = control.recv()
        except EOFError:
            return
        control.send(proxy.command(*command))


@dataclass
class _Proxy:
    upstream_port: int
    server: socket.socket
    requests: list[bytes] = field(default_factory=list)
    cuts: int = 0
    armed: tuple[re.Pattern[bytes], CutMode, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def command(self, name: str, *args: object) -> object:
        with self.lock:
            if name == "arm":
                pattern, mode, times = args
                self.armed = (
                    re.compile(cast(bytes, pattern)),
                    cast(CutMode, mode),
                    cast(int, times),
                )
            return {"requests": list(self.requests), "cuts": self.cuts}.get(name)

    def accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def cut(self, head: bytes) -> CutMode | None:
        with self.lock:
            self.requests.append(head)
            if self.armed is None or not self.armed[0].search(head):
                return None
            pattern, mode, times = self.armed
            self.armed = (pattern, mode, times - 1) if times > 1 else None
            self.cuts += 1
            return mode

    def serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            for head, body in _requests(client):
                mode = self.cut(head)
                if mode == "drop_request":
                    return
                upstream.sendall(head + body)
                response = _response(upstream, head.startswith(b"HEAD "))
                if mode == "drop_response" or response is None:
                    return
                client.sendall(response)
                if b"\r\nconnection: close" in response.split(b"\r\n\r\n", 1)[0].lower():
                    return  # the server closed its side (moto's does after each answer)


def _read_head(sock: socket.socket, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer.extend(chunk)
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


def _read_body(sock: socket.socket, buffer: bytearray, head: bytes) -> bytes | None:
    """The message body after `head`: by Content-Length, or chunked (moto answers both)."""
    lower = head.lower()
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
    if length is None and b"transfer-encoding: chunked" in lower:
        while not buffer.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buffer.extend(chunk)
        body = bytes(buffer)
        buffer.clear()
        return body
    size = int(length.group(1)) if length else 0
    while len(buffer) < size:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer.extend(chunk)
    body = bytes(buffer[:size])
    del buffer[:size]
    return body


def _requests(client: socket.socket) -> Iterator[tuple[bytes, bytes]]:
    buffer = bytearray()
    while True:
        head = _read_head(client, buffer)
        if head is None:
            return
        if b"expect: 100-continue" in head.lower():
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _read_body(client, buffer, head)
        if body is None:
            return
        yield head, body


def _response(upstream: socket.socket, to_head: bool) -> bytes | None:
    buffer = bytearray()
    head = _read_head(upstream, buffer)
    while head is not None and re.match(rb"HTTP/1\.\d 1\d\d", head):  # 100 Continue
        head = _read_head(upstream, buffer)
    if head is None:
        return None
    if to_head or re.match(rb"HTTP/1\.\d (204|304)", head):
        return head
    body = _read_body(upstream, buffer, head)
    return None if body is None else head + body

"""Shared by the connection tests: a FakeVault (see vault_server.py) wired into the env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgflow_tests.connections.vault_server import FakeVault

TOKEN = "hvs.test-root-token"


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVault]:
    """A FakeVault with one all-access token, and a process environment pointing at it."""
    for name in (
        "VAULT_TOKEN",
        "VAULT_ROLE_ID",
        "VAULT_SECRET_ID",
        "VAULT_NAMESPACE",
        "PGFLOW_VAULT_MOUNT",
        "PGFLOW_VAULT_PREFIX",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeVault() as server:
        server.add_token(TOKEN)
        monkeypatch.setenv("VAULT_ADDR", server.url)
        monkeypatch.setenv("VAULT_TOKEN", TOKEN)
        yield server

"""Retries: a transient error (the sink backend terminated mid-run) is retried by the asset's
RetryPolicy and the run ends right; a permanent one (a wrong password) fails once."""

from __future__ import annotations

import threading
import time

import dagster as dg
import psycopg
import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow.connections.errors import is_transient
from pgflow_tests.bindings.conftest import DagsterSetup
from pgflow_tests.bindings.test_definitions_cli import rows

ITEMS = dg.AssetKey(["landing", "items"])


def retrying_asset(setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch) -> dg.AssetsDefinition:
    """The code location's items asset, its retries without delay."""
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PGFLOW_RETRY_DELAY_SECONDS", "0")
    return build_definitions(load_project(setup.specs)).resolve_assets_def(ITEMS)


class TerminateTheFirstLoad:
    """Holds the target's load lock so the first try waits inside its sink transaction, then
    terminates that backend (admin_shutdown, 57P01: transient) and lets the retry through."""

    def __init__(self, sink_uri: str) -> None:
        self.sink_uri = sink_uri
        self.terminated: list[int] = []
        self.holder = psycopg.connect(sink_uri, autocommit=True)
        self.holder.execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('pgflow:landing.items', 0))"
        )
        self.thread = threading.Thread(target=self._terminate)
        self.thread.start()

    def _terminate(self) -> None:
        with psycopg.connect(self.sink_uri, autocommit=True) as admin:
            for _ in range(300):
                found = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgflow'"
                    " AND wait_event_type = 'Lock' AND datname = current_database()"
                ).fetchall()
                if found:
                    admin.execute("SELECT pg_terminate_backend(%s)", (found[0][0],))
                    self.terminated.append(found[0][0])
                    self.holder.execute("COMMIT")  # the retry finds the lock free
                    return
                time.sleep(0.1)

    def join(self) -> None:
        self.thread.join()
        self.holder.close()


def _events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == kind]


def test_a_terminated_sink_backend_is_retried_and_the_run_succeeds(
    dagster_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = dagster_setup
    asset = retrying_asset(setup, monkeypatch)
    fault = TerminateTheFirstLoad(setup.sink_uri)
    with dg.instance_for_test() as inst:
        result = dg.materialize([asset], instance=inst)
    fault.join()
    terminated = fault.terminated
    assert terminated, "the load never waited on the lock"
    assert result.success
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    query = "SELECT id, name, price FROM {} ORDER BY id"
    assert rows(setup.sink_uri, query.format("landing.items")) == rows(
        setup.source_uri, query.format("public.items")
    )


def test_a_wrong_password_fails_once_without_retries(
    dagster_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = dagster_setup
    setup.env["PGFLOW_CONN_SHOP"] = setup.source_uri.replace(setup.password, "not-the-password")
    asset = retrying_asset(setup, monkeypatch)
    with dg.instance_for_test() as inst:
        result = dg.materialize([asset], instance=inst, raise_on_error=False)
    assert not result.success
    assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    failure = _events(result, dg.DagsterEventType.STEP_FAILURE)[0]
    message = str(failure.step_failure_data.error)
    assert "could not connect to 'shop'" in message and "password authentication failed" in message
    assert "not-the-password" not in message and setup.password not in message


def test_error_classes() -> None:
    assert is_transient(psycopg.errors.AdminShutdown("terminated"))
    assert is_transient(psycopg.errors.SerializationFailure("retry"))
    assert is_transient(psycopg.errors.LockNotAvailable("lock_timeout"))
    assert is_transient(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not is_transient(psycopg.OperationalError('password authentication failed for user "x"'))
    assert not is_transient(psycopg.errors.UndefinedColumn("no such column"))
    assert not is_transient(ValueError("bad spec"))

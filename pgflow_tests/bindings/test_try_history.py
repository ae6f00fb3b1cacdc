"""`pgflow/retries` and `pgflow/last_error`: a run whose first try dies with a transient error
(the sink backend terminated) and succeeds on the retry says so in its materialization; a
first-try success says 0 and carries no last_error."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import pytest

from pgflow.bindings.error_text import ERROR_CHARS, error_text
from pgflow_tests.bindings.conftest import DagsterSetup
from pgflow_tests.bindings.test_definitions_cli import rows
from pgflow_tests.bindings.test_retries import ITEMS, TerminateTheFirstLoad, retrying_asset


def _metadata(inst: dg.DagsterInstance) -> dict:
    event = inst.get_latest_materialization_event(ITEMS)
    assert event is not None and event.asset_materialization is not None
    return dict(event.asset_materialization.metadata)


def test_a_retried_run_reports_one_retry_and_the_first_tries_error(
    dagster_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = dagster_setup
    asset = retrying_asset(setup, monkeypatch)
    fault = TerminateTheFirstLoad(setup.sink_uri)
    with dg.instance_for_test() as inst:
        result = dg.materialize([asset], instance=inst)
        fault.join()
        metadata = _metadata(inst)
    assert fault.terminated, "the load never waited on the lock"
    assert result.success
    assert metadata["pgflow/retries"].value == 1
    error = metadata["pgflow/last_error"].value
    assert error.startswith("Failure: pipeline 'landing_items' (")
    assert "AdminShutdown: terminating connection due to administrator command" in error
    assert len(error) <= ERROR_CHARS and "\n" not in error
    assert setup.password not in error
    assert metadata["pgflow/rows_written"].value == 300  # the retry's load, whole
    query = "SELECT id, name, price FROM {} ORDER BY id"
    assert rows(setup.sink_uri, query.format("landing.items")) == rows(
        setup.source_uri, query.format("public.items")
    )


def test_a_first_try_success_reports_no_retries_and_no_error(
    dagster_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset = retrying_asset(dagster_setup, monkeypatch)
    with dg.instance_for_test() as inst:
        assert dg.materialize([asset], instance=inst).success
        metadata = _metadata(inst)
    assert metadata["pgflow/retries"].value == 0
    assert "pgflow/last_error" not in metadata
    assert metadata["pgflow/batches"].value == 1


@dataclass
class _Error:
    message: str
    cls_name: str | None
    cause: _Error | None = None


def test_the_error_text_names_the_class_and_hides_passwords() -> None:
    uri = _Error(
        "dagster._core.definitions.events.Failure: could not connect to "
        "postgresql://app:s3cr3t@db:5432/shop\n  more\n",
        "Failure",
    )
    assert error_text(uri) == "Failure: could not connect to postgresql://app:***@db:5432/shop more"
    conninfo = _Error("host=db password='a b' user=app sslpassword=x2 failed", "OperationalError")
    text = error_text(conninfo)
    assert text == "OperationalError: host=db password=*** user=app sslpassword=*** failed"
    wrapped = _Error(
        "dagster._core.execution.plan.utils.RetryRequestedFromPolicy\n",
        "RetryRequestedFromPolicy",
        _Error("psycopg.errors.AdminShutdown: bye\n", "AdminShutdown"),
    )
    assert error_text(wrapped) == "AdminShutdown: bye"
    long = error_text(_Error("x" * 2000, "ValueError"))
    assert len(long) == ERROR_CHARS and long.startswith("ValueError: xxx") and long[-1] == "…"

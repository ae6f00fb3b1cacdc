"""What pgflow's retry policy retries, and how long it waits: the shipped policy's exponential
backoff, and a replication slot busy with another run left to the retry policy.

Part of the connection-fault tests (test_connection_faults_*.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg
import psycopg
import pytest

from pgflow.bindings.retries import retry_policy
from pgflow.bindings.step_errors import step_errors
from pgflow.connections.errors import is_transient
from pgflow.sources.cdc import ReplicationError, SlotInUse


def test_the_shipped_policy_backs_off_exponentially() -> None:
    policy = retry_policy({"PGFLOW_RETRY_DELAY_SECONDS": "10", "PGFLOW_MAX_RETRIES": "3"})
    assert (policy.max_retries, policy.delay) == (3, 10)
    for _ in range(50):
        waits = [policy.calculate_delay(attempt) for attempt in (1, 2, 3)]
        assert 0 <= waits[0] <= 20 <= waits[1] <= 40 <= 60 <= waits[2] <= 80
    default = retry_policy({})
    assert (default.max_retries, default.delay) == (3, 10)


def test_a_slot_busy_with_another_run_is_left_to_the_retry_policy() -> None:
    """Two runs of one CDC pipeline meet at its slot for a moment (one reads or advances it
    while the other checks it): retried like the server's 55006, not failed for good, and the
    failure names the spec file in case the retries run out."""
    spec = SimpleNamespace(name="landing_items", file="items.yaml")
    busy = SlotInUse(
        "replication slot pgflow_x is in use by another consumer (backend PID 42); stop it, "
        "or give this pipeline its own source.options.slot_name"
    )
    with pytest.raises(dg.Failure) as retried, step_errors(spec):
        raise busy
    assert retried.value.allow_retries is True
    assert retried.value.description.startswith("pipeline 'landing_items' (items.yaml): ")
    assert "is in use by another consumer" in retried.value.description
    with pytest.raises(dg.Failure) as failed, step_errors(spec):
        raise ReplicationError("replication slot pgflow_x does not exist (dropped outside pgflow?)")
    assert failed.value.allow_retries is False
    assert is_transient(psycopg.errors.ObjectInUse("replication slot is active for PID 42"))

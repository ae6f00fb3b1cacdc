"""Connections and servers failing mid-run, through real Dagster materializations.

A backend of the source or the sink is terminated (pg_terminate_backend) at an observable
point of the load: the source's COPY TO under way, the sink's COPY FROM into staging (or into
the target) under way, the apply waiting on a row; or the whole cluster is restarted
(pg_ctl restart -m fast, on a cluster of the test's own). The asset's RetryPolicy retries
each transient error with growing delays, the run succeeds, and the target equals the source
with the right stored position. A non-transient failure mid-run is not retried.

Extends pgflow_tests/bindings/test_retries.py (the sink backend terminated while waiting on
the target's load lock; a wrong password).

This module: full_refresh loads (source or sink COPY terminated, a cancelled statement). The
others: test_connection_faults_incremental, _delta, _restarts, _retry_policy.
"""

from __future__ import annotations

import pytest

from pgflow_tests.reliability.connection_faults_support import (
    BASE_DELAY,
    FULL_REFRESH,
    ITEMS_INSERT,
    PAUSE_AFTER,
    ROWS,
    Pipeline,
    _mid_copy,
    _succeeded,
)
from pgflow_tests.reliability.faults_support import (
    SAME,
    Fault,
    SourceReadPauses,
    assert_backoff,
    copy_in_progress,
    dbname,
    execute,
    fetch,
    figures,
    items_table,
    watching,
)


def test_full_refresh_source_terminated_mid_copy_is_retried(pipeline: Pipeline) -> None:
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(FULL_REFRESH.format(method="truncate_insert"))
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    source_copy = Fault(
        "source COPY",
        copy_in_progress(dbname(pipeline.source_uri), "COPY TO", 1),
        then=pauses.resume(0),
    )
    with watching(pipeline.source_uri, [source_copy]):
        outcome = pipeline.run()
    _succeeded(outcome, retries=1)
    _mid_copy(source_copy, ROWS)
    assert_backoff(outcome, BASE_DELAY)
    copied, total = pipeline.equal()
    figures(
        f"FAULTS full_refresh source terminated mid-COPY (at row {source_copy.seen_tuples}): "
        f"{outcome.retry_count} retry, waited {outcome.waits[0]:.1f} s, "
        f"target {copied}/{total} rows equal",
        case="full_refresh source terminated mid-COPY",
        retries=outcome.retry_count,
        waits=outcome.waits,
        rows=copied,
    )


def test_a_cancelled_statement_fails_once_and_keeps_the_old_target(pipeline: Pipeline) -> None:
    """57014 query_canceled (pg_cancel_backend, statement_timeout) is not transient: the step
    fails without a retry and the target keeps the rows of the last good load."""
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(FULL_REFRESH.format(method="truncate_insert"))
    _succeeded(pipeline.run(), retries=0)
    before = fetch(pipeline.sink_uri, SAME.format("landing.items"))
    execute(pipeline.source_uri, "UPDATE items SET price = 0 WHERE id <= 100")
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    cancel = Fault(
        "sink COPY cancelled",
        copy_in_progress(dbname(pipeline.sink_uri), "COPY FROM", 1),
        action="cancel",
        then=pauses.resume(0),
    )
    with watching(pipeline.sink_uri, [cancel]):
        outcome = pipeline.run()
    assert not outcome.result.success
    assert outcome.retry_count == 0
    assert len(outcome.failures) == 1 and "canceling statement" in outcome.failures[0]
    assert fetch(pipeline.sink_uri, SAME.format("landing.items")) == before
    figures(
        "FAULTS full_refresh sink COPY cancelled (57014): 0 retries, step failed once, "
        f"target kept its {len(before)} old rows",
        case="cancel is not retried",
        retries=0,
        rows=len(before),
    )


@pytest.mark.faults
@pytest.mark.parametrize("method", ["truncate_insert", "exchange"])
def test_full_refresh_sink_terminated_mid_copy_is_retried(pipeline: Pipeline, method: str) -> None:
    items_table(pipeline.source_uri, ROWS)
    pipeline.spec(FULL_REFRESH.format(method=method))
    _succeeded(pipeline.run(), retries=0)  # the target exists: the COPY goes into it (or beside)
    execute(pipeline.source_uri, "DELETE FROM items WHERE id % 7 = 0")
    execute(pipeline.source_uri, ITEMS_INSERT, (ROWS + 1, ROWS + 500))
    total = fetch(pipeline.source_uri, "SELECT count(*) FROM items")[0][0]
    pauses = SourceReadPauses(pipeline.monkeypatch, 1, PAUSE_AFTER)
    sink_copy = Fault(
        "sink COPY",
        copy_in_progress(dbname(pipeline.sink_uri), "COPY FROM", 1),
        then=pauses.resume(0),
    )
    with watching(pipeline.sink_uri, [sink_copy]):
        outcome = pipeline.run()
    _succeeded(outcome, retries=1)
    _mid_copy(sink_copy, total)
    assert_backoff(outcome, BASE_DELAY)
    copied, total = pipeline.equal()
    figures(
        f"FAULTS full_refresh/{method} sink terminated mid-COPY (at row "
        f"{sink_copy.seen_tuples}): {outcome.retry_count} retry, target {copied}/{total} rows "
        "equal",
        case=f"full_refresh/{method} sink terminated mid-COPY",
        retries=outcome.retry_count,
        waits=outcome.waits,
        rows=copied,
    )

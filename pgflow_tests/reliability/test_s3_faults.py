"""Network faults between delta-rs and S3 in the middle of a Postgres -> Delta load.

A TCP proxy (pgflow_tests.s3_server.FaultProxy) in front of a real S3 protocol server cuts
the upload of a data file or of the commit: once (object_store's retry goes through), every
time (the load fails with a clear error and the table keeps its version, rows and position;
the next run succeeds), or after the server took the commit but before its answer (the
client cannot know: the retry finds the version taken, and the app transaction in the commit
stops it from committing the same rows twice).
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta.context import ConcurrentDeltaLoad
from pgflow.sinks.delta.state import app_id
from pgflow.sinks.delta.table import DeltaStorageError
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.s3_server import SECRET_KEY, FaultProxy, S3Delta, S3Server
from pgflow_tests.sinks.delta.conftest import execute, fetch, run_delta

ORDERS = """
CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamptz NOT NULL);
INSERT INTO orders SELECT g, g * 1.5, '2024-01-01 00:00+00'::timestamptz + g * interval '1 s'
FROM generate_series(1, 500) g;
"""
COMMIT = rb"^PUT [^ ]*/_delta_log/\d{20}\.json "
DATA_FILE = rb"^PUT [^ ]*/part-[^ ]*\.parquet"
APPEND = StrategySpec(mode="incremental_append")
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(source_uri, ORDERS)
    return source_uri


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(s3_server.port).start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


def options(s3: S3Delta, proxy: FaultProxy) -> dict[str, str]:
    # object_store retries a failed request: 2 times here (10 by default), so a lasting
    # fault fails in well under a second.
    return {**s3.bucket.storage_options(proxy.endpoint), "max_retries": "2", "retry_timeout": "5s"}


def load(orders: str, uri: str, strategy: StrategySpec, opts: dict[str, str]):
    by_cursor = lambda conn, table: ColumnCursorSource(conn, table, "updated_at")  # noqa: E731
    return run_delta(orders, uri, strategy, make_source=by_cursor, storage_options=opts)


def table_state(s3: S3Delta, uri: str) -> tuple[int, int | None, list[tuple]]:
    table = DeltaTable(uri, storage_options=s3.storage_options)
    rows = pl.read_delta(uri, storage_options=s3.storage_options).sort("id").rows()
    return table.version(), table.transaction_version(app_id("orders")), rows


def changed_source(orders: str) -> None:
    execute(orders, "UPDATE orders SET amount = -1, updated_at = now() WHERE id % 50 = 0")


@pytest.mark.parametrize("pattern", [COMMIT, DATA_FILE], ids=["commit", "data_file"])
def test_one_failed_upload_is_retried(orders, s3_delta, proxy, pattern) -> None:
    uri = s3_delta.uri("lake/orders")
    load(orders, uri, MERGE, options(s3_delta, proxy))
    changed_source(orders)
    proxy.arm(pattern, "drop_request", times=1)

    result = load(orders, uri, MERGE, options(s3_delta, proxy))

    assert proxy.cuts() == 1 and result.version_after == 1
    version, run, rows = table_state(s3_delta, uri)
    assert (version, run) == (1, 2)
    assert [r[:2] for r in rows] == fetch(orders, "SELECT id, amount FROM orders ORDER BY id")


@pytest.mark.parametrize("pattern", [COMMIT, DATA_FILE], ids=["commit", "data_file"])
def test_a_lasting_fault_fails_cleanly_and_the_next_run_succeeds(
    orders, s3_delta, proxy, pattern
) -> None:
    uri = s3_delta.uri("lake/orders")
    load(orders, uri, APPEND, options(s3_delta, proxy))
    before = table_state(s3_delta, uri)
    changed_source(orders)
    proxy.arm(pattern, "drop_request", times=1000)

    with pytest.raises(DeltaStorageError, match="lake/orders") as failed:
        load(orders, uri, APPEND, options(s3_delta, proxy))

    assert failed.value.transient and "run again" in str(failed.value)
    assert SECRET_KEY not in str(failed.value)
    assert table_state(s3_delta, uri) == before  # version, run and rows as they were
    proxy.arm(rb"^$", "drop_request")  # disarmed
    retry = load(orders, uri, APPEND, options(s3_delta, proxy))
    assert retry.version_after == 1 and retry.rows_read == 10  # the 10 changed rows
    version, run, rows = table_state(s3_delta, uri)
    assert (version, run, len(rows)) == (1, 2, 510)


def test_a_commit_whose_answer_is_lost_is_not_committed_twice(orders, s3_delta, proxy) -> None:
    """The server stores the commit, the answer never arrives, object_store sends the PUT
    again and gets 412 (If-None-Match): delta-rs takes the version as another writer's and
    would commit the same rows at the next version; the commit's app transaction (the
    pipeline's run) makes that a conflict instead. The table has the rows once."""
    uri = s3_delta.uri("lake/orders")
    load(orders, uri, APPEND, options(s3_delta, proxy))
    changed_source(orders)
    proxy.arm(COMMIT, "drop_response", times=1)

    with pytest.raises(ConcurrentDeltaLoad):
        load(orders, uri, APPEND, options(s3_delta, proxy))

    version, run, rows = table_state(s3_delta, uri)
    assert (version, run, len(rows)) == (1, 2, 510)  # the commit landed, once
    # The next run goes on from the position that commit holds.
    again = load(orders, uri, APPEND, options(s3_delta, proxy))
    committed = max(fetch(orders, "SELECT max(updated_at) FROM orders")[0])
    assert again.position_before is not None
    assert again.position_before.value.startswith(str(committed)[:19])
    assert table_state(s3_delta, uri)[:2] == (2, 3)

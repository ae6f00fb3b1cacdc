"""Two writers of one Delta table on S3, which has no atomic rename.

pgflow commits with S3 conditional writes (If-None-Match: *, delta-rs 1.x): of two commits of
one version exactly one lands, and the loser's load fails with ConcurrentDeltaLoad (its data
files stay unreferenced). Settings that would give that up are refused before any write.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.connections.delta_writes import UnsafeDeltaStorage, write_storage_options
from pgflow.flows import delta_load
from pgflow.sinks.delta.context import ConcurrentDeltaLoad
from pgflow.sinks.delta.state import app_id
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.s3_server import SECRET_KEY, FaultProxy, S3Delta, S3Server
from pgflow_tests.sinks.delta.conftest import execute, fetch, run_delta

ORDERS = """
CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamptz NOT NULL);
INSERT INTO orders SELECT g, g * 1.5, '2024-01-01 00:00+00'::timestamptz + g * interval '1 s'
FROM generate_series(1, 300) g;
"""


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(source_uri, ORDERS)
    return source_uri


def by_cursor(conn, table):
    return ColumnCursorSource(conn, table, "updated_at")


def race(orders: str, uri: str, strategy: StrategySpec, options: dict[str, str], monkeypatch):
    """Two loads of pipeline "orders" that both open the table before either commits."""
    both_opened = threading.Barrier(2, timeout=20)
    real_open = delta_load.open_table

    def open_then_wait(*args: Any, **kwargs: Any):
        table = real_open(*args, **kwargs)
        both_opened.wait()
        return table

    monkeypatch.setattr(delta_load, "open_table", open_then_wait)

    def load() -> object:
        try:
            return run_delta(orders, uri, strategy, make_source=by_cursor, storage_options=options)
        except ConcurrentDeltaLoad as error:
            return error

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: load(), range(2)))
    monkeypatch.setattr(delta_load, "open_table", real_open)
    return outcomes


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="incremental_append"),
        StrategySpec(mode="incremental_merge", unique_key=("id",)),
    ],
    ids=lambda s: s.mode,
)
def test_two_racing_loads_of_one_pipeline_commit_once(
    orders, s3_delta: S3Delta, strategy, monkeypatch
) -> None:
    uri = s3_delta.uri("lake/orders")
    options = s3_delta.storage_options
    run_delta(orders, uri, strategy, make_source=by_cursor, storage_options=options)
    execute(orders, "UPDATE orders SET amount = 0, updated_at = now() WHERE id <= 10")

    outcomes = race(orders, uri, strategy, options, monkeypatch)

    failed = [o for o in outcomes if isinstance(o, ConcurrentDeltaLoad)]
    won = [o for o in outcomes if not isinstance(o, ConcurrentDeltaLoad)]
    assert len(failed) == 1 and len(won) == 1, outcomes
    assert "run again" in str(failed[0]) and SECRET_KEY not in str(failed[0])
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 1  # the first load and exactly one of the two
    assert table.transaction_version(app_id("orders")) == 2  # run 2, once
    frame = pl.read_delta(uri, storage_options=options)
    changed = 11  # the 10 updated rows and the row on the old mark
    assert frame.height == (300 + changed if strategy.mode == "incremental_append" else 300)
    if strategy.mode == "incremental_merge":
        want = fetch(orders, "SELECT id, amount FROM orders ORDER BY id")
        assert frame.select("id", "amount").sort("id").rows() == want
    # The next run goes on from the winner's position: nothing new, nothing twice.
    again = run_delta(orders, uri, strategy, make_source=by_cursor, storage_options=options)
    assert again.position_before == won[0].position_after  # type: ignore[attr-defined]


def test_commits_are_conditional_puts(orders, s3_server: S3Server, s3_delta: S3Delta) -> None:
    proxy = FaultProxy(s3_server.port).start()
    try:
        options = s3_delta.bucket.storage_options(proxy.endpoint)
        uri = s3_delta.uri("lake/orders")
        run_delta(orders, uri, storage_options=options)
        run_delta(orders, uri, storage_options=options)
        requests = proxy.requests()
    finally:
        proxy.stop()
    commits = [h for h in requests if h.startswith(b"PUT ") and b"/_delta_log/0" in h]
    assert len(commits) == 2
    assert all(b"\r\nif-none-match: *\r\n" in h.lower() for h in commits)


def test_settings_that_give_up_safe_commits_are_refused(orders, s3_delta: S3Delta) -> None:
    uri = s3_delta.uri("lake/orders")
    for unsafe in ({"aws_conditional_put": "disabled"}, {"AWS_S3_LOCKING_PROVIDER": "dynamodb"}):
        options = {**s3_delta.storage_options, **unsafe}
        with pytest.raises(UnsafeDeltaStorage, match=uri) as refused:
            run_delta(orders, uri, storage_options=options)
        assert "PGFLOW_DELTA_AWS_" in str(refused.value)
        assert SECRET_KEY not in str(refused.value)
    assert s3_delta.bucket_keys() == []  # refused before anything was written
    # Safe settings pass; conditional put is pinned when not set; local paths are untouched.
    assert write_storage_options(uri, {})["aws_conditional_put"] == "etag"
    assert write_storage_options(uri, {"AWS_CONDITIONAL_PUT": "etag"}) == {
        "AWS_CONDITIONAL_PUT": "etag"
    }
    assert write_storage_options("/lake/orders", None) is None

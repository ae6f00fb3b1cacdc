"""CDC into a Delta table on S3 (a real S3 protocol server, pgflow_tests.s3_server): the
snapshot and the batches land as on a local disk, and a commit whose answer the network lost
is neither lost nor applied twice (the app transaction it carries turns delta-rs' retry into
a conflict; the next run finds the batch's LSN in the table and skips it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pgflow.sinks.delta.context import ConcurrentDeltaLoad
from pgflow_tests.flows.cdc_delta.conftest import ORDERS, SOURCE, execute, fresh_load, run_delta
from pgflow_tests.s3_server import FaultProxy, S3Delta, S3Server

COMMIT = rb"^PUT [^ ]*/_delta_log/\d{20}\.json "
CHANGES = (
    "INSERT INTO orders (id, status, note) VALUES (900, 'new', repeat('x', 300000));"
    "UPDATE orders SET status = 'paid', amount = amount * 2 WHERE id % 10 = 0;"
    "DELETE FROM orders WHERE id % 25 = 1"
)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(s3_server.port).start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


def _s3_frame(uri: str, s3: S3Delta) -> pl.DataFrame:
    return pl.read_delta(uri, storage_options=s3.storage_options).sort("id")


def test_cdc_into_delta_on_s3(
    source_uri: str, slot: str, tmp_path: Path, s3_delta: S3Delta
) -> None:
    execute(source_uri, ORDERS)
    uri = s3_delta.uri("lake/orders")
    first = run_delta(source_uri, uri, slot, storage_options=s3_delta.storage_options)  # type: ignore[arg-type]
    assert first.snapshot is not None and first.snapshot.rows_read == 200
    execute(source_uri, CHANGES)
    result = run_delta(source_uri, uri, slot, storage_options=s3_delta.storage_options)  # type: ignore[arg-type]
    assert result.changes == 1 + 21 + 8 and len(result.batches) == 1  # 900 is updated too
    assert result.delta_version == first.snapshot.version_after + 1  # one commit per batch
    stored = s3_delta.bucket.keys()  # the objects in the bucket
    assert any(k.endswith(".json") for k in stored)
    expected = fresh_load(source_uri, SOURCE, tmp_path / "fresh").sort("id")
    assert _s3_frame(uri, s3_delta).equals(expected)


def test_a_lost_commit_answer_on_s3_applies_the_batch_once(
    source_uri: str, slot: str, tmp_path: Path, s3_delta: S3Delta, proxy: FaultProxy
) -> None:
    execute(source_uri, ORDERS)
    uri = s3_delta.uri("lake/orders")
    options = {
        **s3_delta.bucket.storage_options(proxy.endpoint),
        "max_retries": "2",
        "retry_timeout": "5s",
    }
    run_delta(source_uri, uri, slot, storage_options=options)  # type: ignore[arg-type]
    execute(source_uri, CHANGES)
    proxy.arm(COMMIT, "drop_response", times=1)  # S3 stores the commit, the answer is lost
    with pytest.raises(ConcurrentDeltaLoad):
        run_delta(source_uri, uri, slot, storage_options=options)  # type: ignore[arg-type]
    assert proxy.cuts() == 1
    expected = fresh_load(source_uri, SOURCE, tmp_path / "fresh").sort("id")
    assert _s3_frame(uri, s3_delta).equals(expected)  # the batch landed, once

    again = run_delta(source_uri, uri, slot, storage_options=options)  # type: ignore[arg-type]
    assert again.batches == []  # skipped: its LSN is in the table
    assert _s3_frame(uri, s3_delta).equals(expected)

"""Shared by the connection-fault tests (test_connection_faults_*.py): the spec templates,
the source rows and retry settings they use, a test's Pipeline (databases, spec folder,
environment) and the checks of a run's outcome."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from pgflow_tests.reliability.faults_support import (
    SAME,
    Fault,
    RunOutcome,
    fetch,
    materialize,
    stored_position,
)

ROWS = 60_000  # about 14 MB: more than the socket buffers between a paused COPY's two ends
PAUSE_AFTER = 1 << 20  # bytes a paused source COPY reads (and writes to the sink) first
BASE_DELAY = 1  # $PGFLOW_RETRY_DELAY_SECONDS in these tests
KEY = dg.AssetKey(["landing", "items"])

FULL_REFRESH = """
source: {{type: postgres, connection_id: shop, table: {{schema: public, name: items}}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: full_refresh, method: {method}}}
"""
MERGE = """
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: items}
  options: {incremental_strategy: column, incremental_column: updated_at}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing, name: items}
  strategy: {mode: incremental_merge, unique_key: [id], merge_policy: delete_insert}
"""
CDC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: cdc, slot_name: {slot}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: incremental_merge, unique_key: [id], merge_policy: upsert}}
"""
DELTA_SINK = """
source: {{type: postgres, connection_id: shop, table: {{schema: public, name: items}}}}
sink:
  type: delta
  path: {path}
  strategy: {{mode: full_refresh}}
"""
DELTA_SYNC = """
source: {{type: delta, path: {path}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: prices}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""

ITEMS_INSERT = (
    "INSERT INTO items SELECT g, 'new ' || g, g * 0.5, now(), repeat(md5(g::text), 6)"
    " FROM generate_series(%s::int, %s::int) g"
)
CHANGES = (
    "UPDATE items SET price = price + 1, updated_at = now()",
    "INSERT INTO items SELECT g, 'new ' || g, g * 0.5, now(), repeat(md5(g::text), 6)"
    f" FROM generate_series({ROWS + 1}, {ROWS + 1000}) g",
)


@dataclass
class Pipeline:
    """Source and sink databases, a spec folder and the environment of one test."""

    source_uri: str
    sink_uri: str
    specs: Path
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch

    def spec(self, text: str) -> None:
        (self.specs / "pipeline.yaml").write_text(text)

    def run(self, key: dg.AssetKey = KEY, **kwargs: object) -> RunOutcome:
        return materialize(self.specs, self.env, key, self.monkeypatch, **kwargs)

    def equal(self, target: str = "landing.items") -> tuple[int, int]:
        """(target rows, source rows), asserting they are the same rows."""
        source = fetch(self.source_uri, SAME.format("public.items"))
        copied = fetch(self.sink_uri, SAME.format(target))
        assert copied == source
        return len(copied), len(source)


def _pipeline(
    source_uri: str, sink_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Pipeline:
    specs = tmp_path / "specs"
    specs.mkdir()
    settings = {
        "PGFLOW_CONN_SHOP": source_uri,
        "PGFLOW_CONN_WAREHOUSE": sink_uri,
        "PGFLOW_RETRY_DELAY_SECONDS": str(BASE_DELAY),
        "PGFLOW_MAX_RETRIES": "3",
        **env,
    }
    return Pipeline(source_uri, sink_uri, specs, settings, monkeypatch)


def _succeeded(outcome: RunOutcome, retries: int) -> None:
    assert outcome.result.success, outcome.failures
    assert outcome.retry_count == retries, outcome.retries
    assert outcome.failures == []


def _mid_copy(fault: Fault, total: int) -> None:
    """The fault hit a COPY under way: past its first rows, before its last."""
    assert fault.seen_tuples is not None and 0 < fault.seen_tuples < total, fault


def _cdc_position_is_the_slot(pipeline: Pipeline, slot: str) -> str:
    stored = stored_position(pipeline.sink_uri, "landing", "items")
    confirmed = fetch(
        pipeline.source_uri,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )[0][0]
    assert stored == confirmed
    return stored

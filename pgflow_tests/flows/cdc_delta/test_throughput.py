"""Throughput and memory of one 100,000-change batch into a 200,000-row Delta table (slow:
`make test-faults`). The run happens in a child process so its peak RSS is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgflow_tests.flows.cdc_delta.conftest import (
    SOURCE,
    delta_frame,
    execute,
    fresh_load,
    run_delta,
)

TABLE = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL, amount numeric(12,2),
                            note text, placed timestamptz NOT NULL DEFAULT now());
INSERT INTO public.orders SELECT g, 'new', g * 1.5, md5(g::text), now()
FROM generate_series(1, 200000) g;
"""
CHANGES = """
UPDATE public.orders SET status = 'paid', amount = amount + 1 WHERE id % 10 < 3;
INSERT INTO public.orders SELECT g, 'fresh', g, md5(g::text), now()
FROM generate_series(200001, 230000) g;
DELETE FROM public.orders WHERE id % 20 = 9;
"""
CHILD = """
import json, re, sys, time
from contextlib import contextmanager
import psycopg
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcSettings, DeltaCdcTarget
from pgflow.flows.cdc.run import replicate
source_uri, path, slot = sys.argv[1:4]
@contextmanager
def connect(**kwargs):
    with psycopg.connect(source_uri, **kwargs) as conn:
        yield conn
target = DeltaCdcTarget(path, StrategySpec("incremental_merge", unique_key=("id",)))
from pgflow.flows.cdc import delta_apply
spent = {}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0) + time.monotonic() - t
    return wrapper
delta_apply._settle_rows = timed("settle", delta_apply._settle_rows)
delta_apply._merge = timed("merge", delta_apply._merge)
delta_apply.apply_delta_batch = timed("apply", delta_apply.apply_delta_batch)
started = time.monotonic()
result = replicate(connect, connect, TableName("public", "orders"), target,
                   CdcSettings(slot=slot, publication=slot), "orders")
seconds = time.monotonic() - started
peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024
print(json.dumps({"changes": result.changes, "batches": len(result.batches),
                  "seconds": seconds, "peak_mb": peak, "spent": spent}))
"""


@pytest.mark.faults
def test_a_100k_change_batch_into_a_200k_row_table(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, TABLE)
    path = tmp_path / "orders"
    run_delta(source_uri, path, slot)
    execute(source_uri, CHANGES)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, source_uri, str(path), slot],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    outcome = json.loads(child.stdout)
    print(outcome, f"{outcome['changes'] / outcome['seconds']:,.0f} changes/s")
    assert outcome["changes"] == 60000 + 30000 + 11500 and outcome["batches"] == 1
    assert outcome["peak_mb"] < 400, outcome
    assert delta_frame(path).equals(fresh_load(source_uri, SOURCE, tmp_path / "fresh").sort("id"))
